#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into fuzz/seeds/<target>/ (read-only for the runs;
what a run finds goes to fuzz/corpus/<target>/, not committed).

Tickets and coupons are signed with the example campaign's published key (config/
spring-festival.toml, `dev-1`), as the targets verify them; the wire layouts are those of
crates/domain/src/ticket.rs and coupon.rs. Campaign seeds are the repo's example file and
variations of it; JSON seeds are the bodies the API tests send; game-log seeds are lines in the
game simulator's log format (crates/gamesim/src/log.rs). Run from fuzz/: python3 seeds/make-seeds.py
"""
import base64, hashlib, hmac, json, os, struct

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = ROOT
SECRET = b"dev-only-change-me-0123456789abcdef"
NOW = 1_802_188_800


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mac(key, text):
    return b64(hmac.new(key, text.encode(), hashlib.sha256).digest())


def ticket(user, issued, ttl, key_id="dev-1", secret=SECRET):
    signed = f"v1.{key_id}.{b64(struct.pack('>Qqq', user, issued, issued + ttl))}"
    return f"{signed}.{mac(secret, signed)}"


def coupon(user, channel, serial, expires, campaign="spring-2027"):
    key = hmac.new(SECRET, b"hongbao/coupon-key/v1", hashlib.sha256).digest()
    c = campaign.encode()
    payload = struct.pack(">QBIqB", user, channel, serial, expires, len(c)) + c
    signed = f"c1.{b64(payload)}"
    return f"{signed}.{mac(key, signed)}"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    good = ticket(123456789, NOW - 10, 3600)
    for i, t in enumerate([
        good,
        ticket(7, NOW - 100_000, 60),
        ticket(2**64 - 1, NOW + 10, 86400),
        ticket(1, NOW, 3600, "k-old", b"old-secret-0123456789abcdef"),
        good[:-1] + "A",
        "v1.nobody.x.y",
        "",
    ]):
        write("ticket", f"seed-{i}", t)
    good = coupon(123456789, 0, 1, NOW + 3600)
    for i, c in enumerate([
        good,
        coupon(5, 1, 2, NOW + 86400),
        coupon(5, 2, 3, NOW - 1),
        coupon(5, 0, 1, NOW + 60, "other-campaign"),
        good.replace("c1.", "c2.", 1),
        "c1..",
    ]):
        write("coupon", f"seed-{i}", c)

    example = open(os.path.join(ROOT, "..", "..", "config", "spring-festival.toml")).read()
    write("campaign_toml", "spring-festival.toml", example)
    write("campaign_toml", "typo.toml", example.replace("coupon_ttl_hours", "coupon_ttl_hour", 1))
    write("campaign_toml", "env-secret.toml", example.replace(
        'secret = "dev-only-change-me-0123456789abcdef"', 'secret_env = "HONGBAO_FUZZ_SECRET"', 1))
    write("campaign_toml", "no-release.toml", example.split("[release]")[0] +
          "[limits]" + example.split("[limits]")[1])

    bodies = [
        {"channel": "swipe"},
        {"channel": "scan", "extra": 1},
        {"coupon": good, "gift_id": "lantern-gold", "zone_id": 1, "role_id": 12345},
        {"coupon": good, "gift_id": "x", "zone_id": 70000, "role_id": -1},
        {"apply": True, "max_requeue_share": 0.1, "force": False, "game_log": "game.log",
         "game_log_until_ms": 1, "out": "out", "from_ms": 0, "to_ms": 10, "stuck_after_s": 60,
         "include_dead": True, "include_expired": False},
        {"events": [{"event": "page_opened", "at_ms": 1}, {"event": "gift_viewed"}]},
        {"events": []},
    ]
    for i, b in enumerate(bodies):
        write("api_json", f"seed-{i}", json.dumps(b))
    write("api_json", "seed-dup", '{"channel":"swipe","channel":"scan"}')
    write("api_json", "seed-syntax", '{"channel":')

    def line(serial, user=42, game="lantern-heroes", at=1_802_188_800_000):
        return json.dumps({"serial": serial, "game": game, "user": user, "zone_id": 1,
                           "role_id": 7, "items": [{"item": "gold", "count": 1}],
                           "applied_at_ms": at})
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(6)]
    log = "\n".join(line(s, at=1_802_188_800_000 - i) for i, s in enumerate(ids)) + "\n"
    write("game_log", "seed-memory", "A" + log)
    write("game_log", "seed-runs", b"\x01" + log.encode())
    write("game_log", "seed-mixed", "A" + log + "not json\n" + line("FOREIGN-1") + "\n"
          + line(ids[0])[:40])


main()
