-- Outbound DKIM signing keys (RFC 6376; Ed25519 per RFC 8463). Same portability rules as 0001.
--
-- state: pending  (made, its TXT record to be published; does not sign yet)
--        active   (signs outbound mail of its domain)
--        retiring (no longer signs; its TXT record stays published until mail signed with it
--                  has been verified by its recipients)
--        retired  (its TXT record may be removed from DNS)
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    -- rsa-sha256 | ed25519-sha256
    algorithm TEXT NOT NULL,
    -- base64 of the private key as PKCS#8 DER.
    private_key TEXT NOT NULL,
    -- base64 of the p= value of the TXT record: SubjectPublicKeyInfo DER for RSA, the raw
    -- 32-byte key for Ed25519.
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    -- When the key stopped signing (became retiring or retired); NULL while pending or active.
    retired_at BIGINT,
    PRIMARY KEY (domain, selector)
);

-- Building the signing key ring reads the active keys of every domain.
CREATE INDEX dkim_keys_state ON dkim_keys (state, domain);
