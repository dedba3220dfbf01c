-- The schema of the first release (no schema_version table): ddns.store's SCHEMA, then ddns.keystore's
-- KEYS_SCHEMA and the users_sub index Store() made at open. Kept to test that such a database upgrades.
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    token_hash TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    sub TEXT,
    email TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    groups TEXT NOT NULL DEFAULT '[]',
    last_login REAL
);
CREATE TABLE IF NOT EXISTS domains (
    zone TEXT PRIMARY KEY,
    created REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    public INTEGER NOT NULL DEFAULT 1,
    groups TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS hosts (
    fqdn TEXT PRIMARY KEY,
    zone TEXT NOT NULL REFERENCES domains(zone),
    owner_id INTEGER NOT NULL REFERENCES users(id),
    secret_hash TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_update REAL,
    last_client TEXT,
    last_agent TEXT,
    last_tls INTEGER,
    auth_faults INTEGER NOT NULL DEFAULT 0,
    client_faults INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    principal TEXT
);
CREATE INDEX IF NOT EXISTS hosts_owner ON hosts(owner_id);
CREATE UNIQUE INDEX IF NOT EXISTS hosts_principal ON hosts(principal);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    seen REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS tsig_keys (
    name TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    secret TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('host', 'acme', 'zone')),
    host TEXT REFERENCES hosts(fqdn) ON DELETE CASCADE,
    zone TEXT,
    rules TEXT NOT NULL DEFAULT '[]',
    owner_id INTEGER REFERENCES users(id),
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tsig_keys_host ON tsig_keys(host);
CREATE UNIQUE INDEX IF NOT EXISTS users_sub ON users(sub);
