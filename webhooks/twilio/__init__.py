"""Twilio webhooks: SMS, WhatsApp, voice. Parse, check the signature, call the ingest service, answer
TwiML. Nothing here knows how sessions are chosen."""
