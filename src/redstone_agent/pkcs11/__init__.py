"""Keys that never leave a PKCS#11 token (an HSM, a secure element, SoftHSM2).

``uri`` reads RFC 7512 ``pkcs11:`` URIs (pure); ``token`` opens the module,
logs in and finds or makes keys (python-pkcs11); ``eckey`` lets code written
for a ``cryptography`` EC private key sign on the token. docs/keys.md.
"""
