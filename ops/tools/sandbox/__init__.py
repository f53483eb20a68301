"""Marketplace sandbox: a local fake of eBay, Etsy and Vinted with inspectable state and faults on demand.

`create_sandbox_app()` (in `app`) builds it; `server.serve(host, port)` runs it with uvicorn. Point a client's
base URL at it: eBay paths start `/identity/` and `/sell/`, Etsy `/v3/`, Vinted `/` and `/api/v2/`.

Control API (JSON, under `/_sandbox`, never counted nor faulted):

- `POST /_sandbox/reset` - forget all accounts, listings, tokens, request records, faults, clock offset.
- `GET  /_sandbox/state` - everything the three marketplaces hold.
- `GET  /_sandbox/ebay/listings?account=` - per seller and SKU: inventory item, offers, live listing ids.
- `GET  /_sandbox/etsy/listings?shop_id=` - per shop: listings (deleted ones flagged) and listings by SKU.
- `GET  /_sandbox/vinted/items?user_id=` - per member: items (deleted ones have `is_closed: true`).
- `GET  /_sandbox/requests?platform=&account=&method=&path_prefix=&since=&until=` - the request log
  `{"count", "requests": [{"platform", "method", "path", "endpoint", "account", "at", "status", "fault"}]}`;
  `since` (inclusive) and `until` (exclusive) are sandbox epoch seconds, see `GET /_sandbox/clock`.
- `GET  /_sandbox/requests/counts?platform=&account=&since=&until=` -
  `{"total", "by_platform", "by_endpoint": {platform: {"POST /api/v2/item_upload/items": n}},
  "by_account": {platform: {account: n}}}`. Vinted accounts are member ids.
- `POST /_sandbox/faults` - arm a fault, e.g. `{"platform": "ebay", "kind": "rate_limit", "count": 2,
  "retry_after": 5, "path_prefix": "/sell/inventory/v1/offer", "methods": ["POST"]}`. Kinds:
  `latency` (`delay_seconds`, optional `max_delay_seconds` for a random delay; `count: null` = until cleared),
  `rate_limit` (429 + `Retry-After`), `server_error` (`status` 5xx), `timeout` (hold `delay_seconds`, default
  30, then 504, work not done), `antibot` (Vinted 403, `mode` `datadome` or `cloudflare`), `response_lost`
  (the write happens, then `mode` `502` (default), `drop` (connection broken mid-answer) or `hang`
  (`delay_seconds` then 504); writes only unless `methods` says otherwise), `token_expired` (eBay/Etsy: the
  presented access token expires and the call is 401, so the client must refresh). `count` (default 1) is
  how many matching requests fail. Faulted requests are still logged and counted.
- `GET  /_sandbox/faults` / `DELETE /_sandbox/faults?platform=` - list / disarm faults.
- `GET  /_sandbox/clock`, `POST /_sandbox/clock/advance {"seconds": 7201}` - read / move the sandbox clock
  (token expiry and request timestamps follow it).
- `POST /_sandbox/ebay/accounts {"account_id"?}` - a seller: `{"account_id", "refresh_token",
  "access_token", "expires_in"}`. Unknown refresh tokens sent to the token endpoint also become sellers.
- `POST /_sandbox/ebay/revoke {"refresh_token"}` - that token now fails with `invalid_grant`.
- `POST /_sandbox/etsy/accounts {"user_id"?, "shop_id"?}` - `{"user_id", "shop_id", "access_token",
  "refresh_token", "expires_in"}`; `POST /_sandbox/etsy/revoke {"refresh_token"}`.
- `POST /_sandbox/vinted/sessions {"user_id"?}` - a logged-in member: `{"user_id", "cookies":
  {"_vinted_fr_session"}, "headers": {"x-csrf-token", "x-anon-id"}}` to send with plugin requests.
"""
