"""Keys and ciphers: everything that touches key material lives here."""
