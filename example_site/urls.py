"""URLs of the example portal; the card login is mounted under ``/moica/``."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from example_site.exit_restriction import views as exit_views
from example_site.household import views as household_views
from example_site.labor_insurance import views as labor_views
from example_site.land import views as land_views
from example_site.portal import views as portal_views

labor_patterns = ([path("", labor_views.index, name="index")], "labor_insurance")
exit_patterns = ([path("", exit_views.index, name="index")], "exit_restriction")
household_patterns = (
    [
        path("", household_views.index, name="index"),
        path("transcript/", household_views.transcript, name="transcript"),
        path("verify/", household_views.verify, name="verify"),
        path("apply/", household_views.TranscriptApplicationView.as_view(), name="apply"),
    ],
    "household",
)

land_patterns = (
    [
        path("", land_views.DeclarationView.as_view(), name="declaration"),
        path("applications/", land_views.applications, name="applications"),
        path("applications/<str:application_id>/", land_views.application, name="application"),
        path(
            "applications/<str:application_id>/evidence.json",
            land_views.evidence,
            name="evidence",
        ),
    ],
    "land",
)

urlpatterns = [
    path("", portal_views.home, name="home"),
    path("demo/card/", portal_views.insert_card, name="demo-card"),
    path("moica/", include("moica_auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("labor-insurance/", include(labor_patterns)),
    path("exit-restriction/", include(exit_patterns)),
    path("household/", include(household_patterns)),
    path("land/", include(land_patterns)),
    path("admin/", admin.site.urls),
]

# Error views that never raise (see example_site.portal.views).
handler400 = "example_site.portal.views.bad_request"
handler403 = "example_site.portal.views.permission_denied"
handler404 = "example_site.portal.views.page_not_found"
handler500 = "example_site.portal.views.server_error"
