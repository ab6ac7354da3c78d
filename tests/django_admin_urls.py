"""URLs with the Django admin, for the admin page tests."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("moica/", include("moica_auth.urls")),
]
