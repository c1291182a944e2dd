from django.urls import path

from realtime.api import RealtimeConnectView

urlpatterns = [
    path("realtime/connect", RealtimeConnectView.as_view(), name="realtime-connect"),
]
