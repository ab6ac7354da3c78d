"""URLs of the card login: ``path("moica/", include("moica_auth.urls"))``."""

from __future__ import annotations

from django.urls import path

from moica_auth import views

app_name = "moica"

urlpatterns = [
    path("session/", views.session_view, name="session"),
    path("challenge/", views.challenge_view, name="challenge"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("login-page/", views.login_page_view, name="login-page"),
]
