"""Applications built on the PKI: single sign-on (apps/sso) and document exchange."""
