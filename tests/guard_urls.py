"""URLs for the malformed-body tests: moica endpoints, ``/i18n/``, the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("moica/", include("moica_auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]
