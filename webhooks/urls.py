from django.urls import path

from webhooks.twilio import views as twilio

urlpatterns = [
    path("twilio/sms/", twilio.sms, name="twilio-sms"),
    path("twilio/whatsapp/", twilio.whatsapp, name="twilio-whatsapp"),
    path("twilio/voice/", twilio.voice, name="twilio-voice"),
    path("twilio/voice/gather/", twilio.voice_gather, name="twilio-voice-gather"),
    path("twilio/status/", twilio.message_status, name="twilio-status"),
]
