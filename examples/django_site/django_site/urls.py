from django.urls import path

from django_site import views

urlpatterns = [
    path("", views.index, name="index"),
    path("async/", views.async_status, name="async-status"),
    path("echo/", views.echo, name="echo"),
    path("countdown/", views.countdown, name="countdown"),
]

# With DEBUG off, a URL nothing matches is answered by this view (Django's default is an HTML page).
handler404 = "django_site.views.not_found"
