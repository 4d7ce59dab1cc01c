"""api-gateway (8000): the platform's OAuth2 authorisation server and its one public door."""
