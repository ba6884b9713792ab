"""Default configuration of whattimeisitrightnow (shipped in the package as app/defaults.py).

Every UPPER_CASE name here is a setting, typed and checked by app/settings.py.
Override any of them in the operator's file named by WHATTIMEISITRIGHTNOW_CONFIG
(a Python file like this one, with only the keys it changes), with an
environment variable ``FLASK_<NAME>`` read by the key's type (booleans
true/false, yes/no, on/off, 1/0; lists as JSON or comma-separated; ISO 8601
durations), or, in tests, with ``create_app({"NAME": value})``.
"""

# --- Globus Auth -------------------------------------------------------------
# The provider's Globus Auth confidential client (a "resource server").
# Required unless AUTH_MODE is "dev".
CLIENT_ID: str = ""
CLIENT_SECRET: str = ""
# The scope that callers' tokens must carry, e.g.
# "https://auth.globus.org/scopes/<CLIENT_ID>/action_all".
SCOPE: str = ""

# "globus" (real token introspection) or "dev" (local dev tokens
# "dev-token-<name>", loopback clients only). Never set "dev" in production.
AUTH_MODE: str = "globus"

# Seconds to wait for Globus Auth / Groups before answering 503.
AUTH_TIMEOUT_SECONDS: float = 5.0
# Introspection results are cached (keyed by a hash of the token).
INTROSPECT_CACHE_SIZE: int = 10_000
INTROSPECT_CACHE_TTL_SECONDS: int = 30
# Group memberships of callers whose actions are shared with groups
# (monitor_by/manage_by) are cached by token: one Globus Groups call a token
# per TTL. The TTL is how long a removal from a group may take to apply.
GROUPS_CACHE_SIZE: int = 10_000
GROUPS_CACHE_TTL_SECONDS: int = 300
# The dependent tokens (for Groups) granted for a caller's token are cached
# too, each for less than the 48 hours they are valid (at most 169200, 47 h).
# Keep the size at least GROUPS_CACHE_SIZE: each group lookup that misses
# needs them. All three caches are per worker process and hold only tokens
# seen within their TTL; a full one takes about 10 KB an entry (introspection,
# dependent tokens) or 0.6 KB (groups, for one group).
DEPENDENT_TOKENS_CACHE_SIZE: int = 10_000
DEPENDENT_TOKENS_CACHE_TTL_SECONDS: int = 47 * 3600

# --- Storage -----------------------------------------------------------------
# memory:// (default, lost on restart), sqlite:///path/to/file.db, or
# postgresql://user@host/dbname.
STORE_URL: str = "memory://"
# SQL stores (SQLite, PostgreSQL): each worker process keeps a pool of at most
# STORE_POOL_SIZE connections, opened only when needed (a worker whose
# requests never overlap keeps one). Keep it at least the server's threads per
# worker (default 4), so a request never waits for a connection; the default
# leaves room to raise the threads to 8. Workers x STORE_POOL_SIZE must fit
# under PostgreSQL's max_connections (or PgBouncer's max_client_conn).
STORE_POOL_SIZE: int = 8
# Seconds a statement waits for a free pooled connection before the request
# is answered 503 (StoreUnavailable, with Retry-After).
STORE_POOL_TIMEOUT_SECONDS: float = 5.0
# The longest a store statement may take before the request is answered 503:
# PostgreSQL's statement_timeout (set on each connection), SQLite's wait for
# the write lock. Statements take milliseconds; this is far above that, so a
# busy database is not mistaken for a dead one, and below a proxy's read
# timeout (nginx: 60 s), so the client gets a 503 rather than a 504.
STORE_STATEMENT_TIMEOUT_SECONDS: float = 10.0
# The memory store keeps at most this many actions (released and expired ones
# do not count). When full, a new run is answered 503 ProviderFull with
# Retry-After until actions are released or expire: nothing stored is dropped,
# and memory stays within budget. Sized for 1 GiB of the largest actions the
# per-request bounds allow (64 + 64 principals, a 64-character label and a
# request_id of MAX_REQUEST_ID_LENGTH characters, all 4-byte characters): about
# 21 KB each (bench/memory.py); a typical action takes about 0.8 KB. Give the
# process about 21 KB for each action you add here.
MEMORY_STORE_CAPACITY: int = 50_000

# --- Actions -----------------------------------------------------------------
# Each action finishes a random number of seconds in [MIN, MAX] after it starts.
MIN_DELAY_SECONDS: float = 5
MAX_DELAY_SECONDS: float = 900
# Share of actions that fail with WATCHLESS (0.0 to 1.0).
FAILURE_RATE: float = 0.3
# How long a completed action is kept before it is released automatically
# (ISO 8601 duration), unless the run request gives its own release_after.
RELEASE_AFTER: str = "P30D"
# The longest release_after a run request may ask for.
MAX_RELEASE_AFTER: str = "P90D"
# The latest deadline a run request may give, from now (ISO 8601 duration).
MAXIMUM_DEADLINE: str = "P30D"
# Longest request_id accepted, in characters (a character is 1 to 4 UTF-8
# bytes); longer: 400. Globus Flows sends UUIDs (36 characters).
MAX_REQUEST_ID_LENGTH: int = 256

# --- HTTP --------------------------------------------------------------------
# Largest request body accepted, in bytes (larger: 413).
MAX_CONTENT_LENGTH: int = 64 * 1024

# --- Operations --------------------------------------------------------------
# Log level of the app's logs (DEBUG, INFO, WARNING, ERROR).
LOG_LEVEL: str = "INFO"
# "json" (one JSON object a line, for log collectors) or "text" (for people).
LOG_FORMAT: str = "json"
# One log line a request (INFO, logger app.request). Off where the proxy's
# access log is enough: on the memory store the line is the largest single
# cost of a request (docs/performance.md).
LOG_REQUESTS: bool = True
# Serve Prometheus metrics at GET /metrics (no auth: restrict it at the proxy,
# or turn it off). /healthz is always served.
METRICS_ENABLED: bool = True

# --- Introspection -----------------------------------------------------------
# Principal URNs (urn:globus:auth:identity:<uuid> or urn:globus:groups:id:<uuid>)
# of the provider's administrators, published in the introspection document.
ADMINISTERED_BY: list = []

# --- Fair use: live actions per identity --------------------------------------
# The most live actions one caller (the creator's identity) may have at once,
# on every store: started and not yet released, running or completed (an action
# released, or past its release_after, does not count). Over it, a new run is
# answered 429 with Retry-After; a repeat of a request_id already acknowledged
# is always answered (200, the same action), and a release makes room at once.
# Globus Flows releases each action once its step is done, so a user holds
# about one here per running flow that uses this provider; a client that never
# releases keeps each action for its release_after (30 days by default), and
# 10,000 is then 333 a day. At the limit a run costs about 1.4 ms more on
# PostgreSQL (counting, an index range scan). 0: no limit.
MAX_LIVE_ACTIONS: int = 10_000

# --- Who may use the provider ------------------------------------------------
# Who may see the provider (GET /, this introspection document) and who may
# start actions on it (POST /run and POST /actions), published in the document
# as visible_to and runnable_by. Lists of principal URNs (as ADMINISTERED_BY)
# and "all_authenticated_users" (anyone with a valid token for SCOPE);
# VISIBLE_TO may also hold "public": then GET / answers without a token (every
# other route still needs one). Checked right after the token, before a run's
# body is read: anyone else gets 403 and learns nothing of the input schema.
# A group costs one Globus Groups call a caller's token, cached (GROUPS_CACHE_*);
# while Globus Groups is down, callers allowed only through a group get 403.
# Status, log, cancel, release and the action list go by each action's
# monitor_by and manage_by, not by these. Neither may be empty (to close the
# provider, list its administrators).
VISIBLE_TO: list = ["all_authenticated_users"]
RUNNABLE_BY: list = ["all_authenticated_users"]

# --- Fair use: bounds of one run request --------------------------------------
# A run request over one of these can never succeed, so it is refused with 400
# (not 429), naming the field and the bound. They bound the request around
# `body` (which schema.json bounds; the input_schema published in
# introspection is unchanged). Besides these: request_id (MAX_REQUEST_ID_LENGTH),
# label (the spec's 64 characters: at most 256 UTF-8 bytes), monitor_by and
# manage_by without repeats (the spec's uniqueItems), the whole body
# (MAX_CONTENT_LENGTH).
# Principals in monitor_by, and in manage_by (each). Globus Flows sends the
# run's monitors or managers and the identities it acts for: a handful, rarely
# tens. Each is kept with the action as long as the action is.
MAX_PRINCIPALS: int = 64
# tags (sent by the globus-automate client; accepted, not kept): how many, and
# the longest one in UTF-8 bytes (an "e" is 1 byte, an "é" 2, an emoji 4).
# People tag a run with a few words.
MAX_TAGS: int = 32
MAX_TAG_BYTES: int = 256

# --- Fair use: request rates per identity ------------------------------------
# How often one caller (its effective Globus identity) may ask, in the `limits`
# library's notation: "<count>/<second|minute|hour|day>", several joined by ";"
# (each must hold; each costs a Redis round trip), or "" for no limit. Over a
# rate: 429 with Retry-After. Counted on every worker and host together when
# RATE_LIMIT_STORAGE_URL is Redis.
# POST /run and POST /actions: one run is one flow step, so even a user starting
# hundreds of flow runs at once stays under 10 a second; a repeat of a request_id
# already acknowledged is always answered (200, the same action), whatever the rate.
RUN_RATE_LIMIT: str = "600/minute"
# Every other GET that needs a token: status, enumerate, log, introspection.
# Globus Flows polls each running action's status with a growing back-off, so
# 50 a second sustained leaves room for hundreds of one user's actions at once.
# Cancel, resume and release are never rate-limited.
GET_RATE_LIMIT: str = "3000/minute"
# Where the counts live. memory:// (default): in this process only, right for
# the memory store's single process; with more than one worker process the
# service refuses to start. redis://host:6379/0 (or rediss://..., or
# redis+unix:///path): one count shared by every worker and host. Redis not
# answering at start: the service does not start. While serving: requests are
# served without rate limits (a WARNING at most once a minute, the metric
# rate_limit_storage_errors_total) and Redis is tried again a second later.
# Socket timeouts are 0.25 s; the URL may set others (?socket_timeout=0.5).
RATE_LIMIT_STORAGE_URL: str = "memory://"
# Principal URNs never rate-limited nor held to MAX_LIVE_ACTIONS, e.g. the
# provider's administrators: identities, or groups (one Globus Groups lookup,
# cached, and only for a caller already over a limit).
RATE_LIMIT_EXEMPT: list = []

# --- Reverse proxy -------------------------------------------------------------
# Addresses or networks (e.g. "10.0.0.0/24") of the reverse proxies in front of
# the service. Only from these are X-Forwarded-For (the client's address, as
# logged and as request.remote_addr) and X-Forwarded-Proto (https) believed;
# from anyone else they are ignored. Default: a proxy on this host only.
TRUSTED_PROXIES: list = ["127.0.0.1", "::1"]
