-- Generated tokens are kept as hashes: a copy of the database must not let anyone call the
-- service. Tokens stored in clear by earlier versions are hashed in place; the tokens in use
-- keep working (the service compares hashes).
update agentbot_settings
set value = 'sha256:' || encode(sha256(convert_to(value, 'UTF8')), 'hex')
where key in ('webhook_token', 'api_token') and value not like 'sha256:%';
