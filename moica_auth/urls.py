"""URLs of the card login: ``path("moica/", include("moica_auth.urls"))``."""

from __future__ import annotations

from django.urls import path

from moica_auth import views
from moica_auth.mobile import views as mobile_views
from moica_auth.signing import mobile as mobile_signing

app_name = "moica"

urlpatterns = [
    path("session/", views.session_view, name="session"),
    path("challenge/", views.challenge_view, name="challenge"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("login-page/", views.login_page_view, name="login-page"),
    # The mobile citizen certificate (行動自然人憑證): moica_auth/mobile/views.py.
    path("mobile/start/", mobile_views.start_view, name="mobile-start"),
    path("mobile/status/", mobile_views.status_view, name="mobile-status"),
    # WEB-01: the callback registered with MOI, and the same-site finish step.
    path("mobile/web/callback/", mobile_views.web_callback_view, name="mobile-web-callback"),
    path("mobile/web/finish/", mobile_views.web_finish_view, name="mobile-web-finish"),
    # Signing a signature request with the phone: moica_auth/signing/mobile.py.
    path("sign/mobile/start/", mobile_signing.start_view, name="sign-mobile-start"),
    path("sign/mobile/status/", mobile_signing.status_view, name="sign-mobile-status"),
]
