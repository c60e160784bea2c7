"""Secrets in text: provider key shapes (matched case-sensitively at a trigger), private key blocks, JWTs,
credentials in commands and URLs, and values after a secret's name. One scan over the text finds every place a
secret can start (a trie of literal prefixes, see `_scan.PrefixScan`); the patterns and the scoring run only
there."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

from agentmesh.services.guard._scan import PrefixScan
from agentmesh.services.guard._text import CONTEXT_CHARS, Finding, Scan, as_scan, context_words, near

_SECRET_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "private_key": 0.99,
        "aws": 0.95,
        "github": 0.95,
        "gitlab": 0.95,
        "slack": 0.9,
        "slack_webhook": 0.9,
        "stripe": 0.95,
        "stripe_test": 0.85,
        "google": 0.9,
        "google_oauth": 0.9,
        "anthropic": 0.97,
        "openai": 0.9,
        "sendgrid": 0.95,
        "square": 0.95,
        "npm": 0.95,
        "pypi": 0.95,
        "huggingface": 0.9,
        "shopify": 0.95,
        "digitalocean": 0.95,
        "jwt": 0.9,
    }
)
# Provider key shapes, matched case-sensitively on the original text at a trigger's position.
_PROVIDER_RE = re.compile(
    r"(?P<private_key>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----)"
    r"|(?P<aws>\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[0-9A-Z]{16}\b)"
    r"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b)"
    r"|(?P<gitlab>\b(?:gl(?:pat|ptt|dt|rt)-[0-9A-Za-z_-]{20,}|GR1348941[0-9A-Za-z_-]{20,}))"
    r"|(?P<square>\bsq0(?:atp-[0-9A-Za-z_-]{22}|csp-[0-9A-Za-z_-]{43})(?![0-9A-Za-z_-]))"
    r"|(?P<slack>\bxox[baprs]-[A-Za-z0-9-]{10,})"
    r"|(?P<slack_webhook>https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,})"
    r"|(?P<stripe>\b[rs]k_live_[A-Za-z0-9]{16,247}\b)"
    r"|(?P<stripe_test>\b[rs]k_test_[A-Za-z0-9]{16,247}\b)"
    r"|(?P<google>\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-]))"
    r"|(?P<google_oauth>\bya29\.[0-9A-Za-z_-]{20,})"
    r"|(?P<anthropic>\bsk-ant-[A-Za-z0-9_-]{20,})"
    r"|(?P<openai>\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,})"
    r"|(?P<sendgrid>\bSG\.[0-9A-Za-z_-]{22}\.[0-9A-Za-z_-]{43}(?![0-9A-Za-z_-]))"
    r"|(?P<npm>\bnpm_[A-Za-z0-9]{36}\b)"
    r"|(?P<pypi>\bpypi-AgEIcHlwaS5vcmc[0-9A-Za-z_-]{50,})"
    r"|(?P<huggingface>\bhf_[A-Za-z]{34}\b)"
    r"|(?P<shopify>\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b)"
    r"|(?P<digitalocean>\bdo[opr]_v1_[a-f0-9]{64}\b)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
)
_PROVIDER_PREFIXES = (
    r"-----begin |akia|asia|abia|acca|agpa|aida|aroa|aipa|anpa|anva|a3t|gh[pousr]_|github_pat_|gl(?:pat|ptt|dt|rt)-"
    r"|gr1348941|sq0atp-|sq0csp-|xox[baprs]-|https://hooks\.slack\.com/|[rs]k_(?:live|test)_|aiza|ya29\.|sk-|sg\.|npm_|pypi-|hf_"
    r"|shp(?:at|ca|pa|ss)_|do[opr]_v1_|eyj"
)
# Words that introduce a secret. No lookbehind: a keyword may end an identifier (DB_PASSWORD, adminPassword);
# `_keyword_end` decides from the text around it.
_SECRET_KEYWORDS = (
    r"(?:secret[_ -]?access[_ -]?key|secret[_ -]?key|access[_ -]?key(?:[_ -]?id)?|api[_ -]?key|apikey"
    r"|client[_ -]?secret"
    r"|private[_ -]?key|(?:auth|access|refresh|bearer|api)[_ -]?token|account[_ -]?key|shared[_ -]?access[_ -]?key"
    r"|authorization|secret|token|bearer|password|passwd|passphrase|pwd|pass|pword|pw|credentials?|creds?|key"
    # the same in other languages
    r"|passwort|kennwort|contrase(?:ñ|n)a|senha|wachtwoord|mot de passe|mdp|пароль"
    r"|密码|パスワード|비밀번호|비번|암호|패스워드"
    r")s?(?![a-z0-9])"
)
# Credentials written into a command or a URL: curl's `-u user:password`, `scheme://user:password@host`.
_USER_ARG = r"(?:--user[ =]|-u\s)"
# The one scan over the lower-cased text (`Scan.low`): where a provider key could start, a secret keyword stands,
# or credentials may follow. Case-insensitive matching and capture groups each make Python's re several times
# slower on a plain scan.
_SECRET_TRIGGER = PrefixScan(f"{_PROVIDER_PREFIXES}|://|{_USER_ARG}|{_SECRET_KEYWORDS}")
_SECRET_KEYWORD_RE = re.compile(_SECRET_KEYWORDS)
_USER_ARG_RE = re.compile(_USER_ARG + r"""\s*["']?([^\s:"'/<>]{1,64}):([^\s"'<>]{3,128})""")
_URL_CREDENTIALS_RE = re.compile(r"""://([^\s:/@"'<>]{1,64}):([^\s/@"'<>]{1,128})@[\w-]+""")
# `key=VALUE`, `key: VALUE`, `"key": "VALUE"`, `key => VALUE`, `<key>VALUE`, `Authorization: Bearer VALUE`,
# `key is VALUE`.
_ASSIGN_RE = re.compile(r"[\s\"']*(?:=>|[:=]+|>)[\s\"']*(?:(?:basic|bearer|token|digest)\s+)?|\s+is\s+", re.IGNORECASE)
# A quoted value right after the keyword is taken whole: passwords hold the `,;{}()` that end a bare token.
_QUOTED_VALUE_RE = re.compile(r"""["']?\s*(?:=>|:=|[:=])\s*(?:"([^"\n]{1,256})"|'([^'\n]{1,256})')""")
_PEM_MAX_BODY = 16_384  # an RSA-4096 key is ~3.3 KB; a footer further away closes something else
_PEM_FOOTER_RE = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# Bounded, so that a long run of `key:key:key:...` cannot make every keyword rescan the rest of the text.
_TOKEN_RE = re.compile(r"[^\s\"'`,;()<>\[\]{}|]{1,256}")
_HANGUL_PARTICLE_RE = re.compile(r"[\uac00-\ud7a3]{1,4}(?=[\x21-\x7e])")  # 비번은Prl23Db: a particle glued on
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_EMAIL_LIKE_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Names rather than values: `Keyword.Pseudo`, `ec.EllipticCurvePrivateKey`, `attached_file_0`, `_1_KeyScalar`.
_DOTTED_NAME_RE = re.compile(r"~?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(\))?")
_SNAKE_NAME_RE = re.compile(r"_?[A-Za-z0-9]+(?:[_-]+[A-Za-z0-9]+)+|_[A-Za-z0-9]+")
_NAME_PART_SPLIT_RE = re.compile(r"[_.()~-]+")
_VOWELS = frozenset("aeiouAEIOU")
_MODULE_RE = re.compile(r"[a-z_]+\.")  # rust_openssl.hpke.MLKEM768X25519PrivateKey: a module path
_LETTER_DIGIT_EDGE_RE = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_CASE_EDGE_RE = re.compile(r"(?<=[a-z])(?=[A-Z])")
_WORDS_ONLY_RE = re.compile(r"[#.]?[A-Za-z]+(?:[._-][A-Za-z]+)*")
_HASH_CONTEXT = context_words("commit", "sha", "sha1", "sha256", "hash", "revision", "rev", "checksum", "digest", "md5")
_STRONG_KEYWORDS = frozenset(
    {
        "secret",
        "token",
        "password",
        "passwd",
        "apikey",
        "apitoken",
        "accesstoken",
        "authtoken",
        "clientsecret",
        "secretaccesskey",
        "secretkey",
        "privatekey",
        "passphrase",
        "authorization",
        "accountkey",
        "sharedaccesskey",
    }
)
_PASSWORD_KEYWORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "pas",
        "pw",
        "pword",
        "passwort",
        "kennwort",
        "contraseña",
        "contrasena",
        "senha",
        "wachtwoord",
        "motdepasse",
        "mdp",
        "пароль",
        "密码",
        "パスワード",
        "비밀번호",
        "비번",
        "암호",
        "패스워드",
    }
)
# After `key_` or `password_`, these words keep the name a secret's name (DB_PASSWORD_PROD, API_KEY_B64); any
# other (password_hash, token_type, key_down_event) names something else.
_KEYWORD_TAILS = frozenset(
    {
        "key",
        "keys",
        "token",
        "tokens",
        "secret",
        "secrets",
        "value",
        "val",
        "str",
        "string",
        "b64",
        "base64",
        "raw",
        "env",
        "prod",
        "production",
        "dev",
        "test",
        "live",
        "staging",
        "hex",
        "plain",
        "plaintext",
        "text",
        "encoded",
    }
)
# A bare `key` is too common (sort_key, bucket_key, key_down): it counts only after one of these words.
_KEY_HEADS = frozenset(
    {
        "api",
        "secret",
        "private",
        "access",
        "encryption",
        "signing",
        "master",
        "auth",
        "license",
        "licence",
        "account",
        "app",
        "client",
        "service",
        "shared",
        "aes",
        "hmac",
        "crypto",
        "enc",
        "decryption",
        "session",
        "admin",
        "root",
        "deploy",
        "ssh",
        "subscription",
        "consumer",
        "webhook",
        "sas",
        "storage",
        "jwt",
        "cipher",
    }
)
# Tokens that are not secret by name: public keys, anti-CSRF tokens, pagination cursors.
_PUBLIC_HEADS = frozenset(
    {
        "public",
        "publishable",
        "pub",
        "csrf",
        "xsrf",
        "next",
        "page",
        "continuation",
        "cursor",
        "sync",
        "sort",
        "primary",
        "foreign",
        "partition",
        "cache",
        "idempotency",
    }
)
_PLACEHOLDERS = frozenset(
    {
        "pass",
        "pwd",
        "changeme",
        "change_me",
        "example",
        "sample",
        "dummy",
        "redacted",
        "hidden",
        "none",
        "null",
        "nil",
        "undefined",
        "empty",
        "placeholder",
        "token",
        "apikey",
        "api_key",
        "your_api_key",
        "yourapikey",
    }
)
# A value that names itself (`password1`, `my_secret`, `testpassword`) is an example, not a secret.
_SELF_NAMING = ("password", "passwd", "secret")
_AUTH_SCHEME_RE = re.compile(r"(?:basic|bearer|token|digest)\s+", re.IGNORECASE)
_TOKENS_AFTER_KEYWORD = 4  # "a few words": `my api key is XYZ`, `"token": "XYZ"`
_NAME_SPLIT_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_TOKEN_TAIL_RE = re.compile(r"[a-z0-9]+")  # the next part of a name after `_`, `.` or `-`


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _char_classes(s: str) -> int:
    return (
        any(c.islower() for c in s)
        + any(c.isupper() for c in s)
        + any(c.isdigit() for c in s)
        + any(not c.isalnum() for c in s)
    )


def _placeholder(value: str) -> bool:
    """`changeme`, `<your-key>`, `${DB_PASSWORD}`, `xxxxxxxx`, `********`: a slot for a secret, not one."""
    v = value.lower()
    return (
        v in _PLACEHOLDERS
        or v.startswith(("<", "&lt;", "${", "{{ ", "%(", "$", "{{secrets", "**"))
        or "xxxx" in v
        or "****" in v
        or "..." in v
        or "\u2026" in v
        or len(set(v)) <= 2
        or (len(v) < 16 and any(word in v for word in _SELF_NAMING))
    )


def _wordish(part: str) -> bool:
    """A part of a name (`file`, `5m`, `s2member`, `KeyScalar`), not of a generated key (`eyJGRpVu1c2VzY2`)."""
    return len(part) <= 24 and len(_LETTER_DIGIT_EDGE_RE.findall(part)) <= 2 and len(_CASE_EDGE_RE.findall(part)) <= 3


def _name_like(token: str, *, quoted: bool = False) -> bool:
    """An identifier, a dotted reference, a path or plain words: what follows `key=` in code far more often than
    a value does."""
    bare = token.rstrip("=")
    parts = _NAME_SPLIT_RE.findall(bare) if bare.isalnum() else []
    if bare.isalpha() and len(parts) >= 2 and sum(c in _VOWELS for c in bare) >= 0.3 * len(bare):
        return True  # CamelCase words (AuthConfigAccessKeyID): random letters hold ~20% vowels, words ~40%
    if _mixed_case_noise(bare):
        return False  # letters only, but their case flips as no name's does
    return (
        (
            _DOTTED_NAME_RE.fullmatch(token) is not None
            and (_MODULE_RE.match(token) is not None or all(map(_wordish, _NAME_PART_SPLIT_RE.split(token))))
        )
        or _WORDS_ONLY_RE.fullmatch(bare) is not None
        or (len(parts) >= 2 and sum(map(len, parts)) == len(bare) and len(bare) >= 4 * len(parts))  # CamelCase
        or (_SNAKE_NAME_RE.fullmatch(token) is not None and all(map(_wordish, _NAME_PART_SPLIT_RE.split(token))))
        or token.startswith(("./", "../", "/", "~/", ".", "@", "*", "-", "\\"))
        or (not quoted and "=" in bare)  # `x=True`: an argument; base64 pads only at the end
    )


def _keyword_kind(keyword: str) -> str:
    """A keyword match as the keyword sets spell it: `API-Keys` -> `apikey`, `pass` -> `pas`."""
    return re.sub(r"[\s_-]", "", keyword.lower()).removesuffix("s")


def _token_score(token: str, kw: str, *, assigned: bool, first: bool, quoted: bool = False) -> float | None:
    """Score a token seen just after a secret keyword, or None when it does not look like a secret. The shape
    is scored first (cheap, and most tokens fail it); only a candidate is checked for being a name or a slot."""
    score = _shape_score(token, kw, assigned=assigned, first=first)
    if score is None or not token.isascii():  # secrets are ASCII; `パスワードを教えて` is a sentence going on
        return None
    if "://" in token or _EMAIL_LIKE_RE.fullmatch(token) or _placeholder(token) or _name_like(token, quoted=quoted):
        return None  # a URL, an address, a slot for a value, or a name (`$DB_PASSWORD`, `settings.TOKEN`)
    return score


def _shape_score(token: str, kw: str, *, assigned: bool, first: bool) -> float | None:
    """How much the token looks like a secret for its keyword (`kw`, see `_keyword_kind`) and place (`assigned`:
    after `=`, `:` or `is`; `first`: the first token after the name), before asking whether it is a name or a
    slot."""
    if kw == "pas" and not assigned:
        return None  # "pass" is a verb far more often: `pass *labels*`, `pass --verbose`
    strong, password = kw in _STRONG_KEYWORDS or kw in _PASSWORD_KEYWORDS, kw in _PASSWORD_KEYWORDS
    if _UUID_RE.fullmatch(token):
        return 0.5 if assigned and strong else None  # an id, unless a key's name says otherwise (npm, Heroku)
    if _HEX_RE.fullmatch(token):
        # Hex strings are usually hashes; only an explicit `token=abc123...` counts, and then weakly.
        return 0.6 if assigned and strong and len(token) >= 20 else None
    classes = _char_classes(token)
    has_digit = any(c.isdigit() for c in token)
    # Generated keys this long all but always hold a digit ((52/62)**20 ~ 3% do not); names such as
    # `secrets.GITHUB_TOKEN` or `MyServiceClientFactory` never do.
    if len(token) >= 20 and classes >= 2 and has_digit and _entropy(token) >= 3.5:
        return 0.85 if assigned else 0.75
    if (
        (assigned or first)
        and strong
        and len(token) >= 24
        and classes >= 2
        and _entropy(token) >= 4.0
        and not token.isalpha()
    ) or ((assigned or first) and len(token) >= 24 and _mixed_case_noise(token)):
        return 0.75  # `api key is aahTOWJptbnkGgvq...`: letters only, but no word looks like that
    if password and (assigned or first) and len(token) >= 8 and classes >= 3 and _entropy(token) >= 2.5:
        return 0.8 if assigned else 0.7  # `password: Prl23Db#@`, `--password 7Nv&uaO3jF8Ul`
    if assigned and len(token) >= 10 and classes >= 3 and _entropy(token) >= 3.0:
        return 0.7  # a shortish key given explicitly (`api-token: Sk94HG7f6KB`)
    if first and strong and len(token) >= 12 and classes >= 3 and has_digit and _entropy(token) >= 3.3:
        return 0.6  # `client secret AIhq5Xyb1Gga9Q9`
    if password and (assigned or first) and len(token) >= 6 and not token.isalpha():
        return 0.6  # `db_password = "t7w^Rk"`, `password: super$ecret`
    return None


def _mixed_case_noise(token: str) -> bool:
    """Letters whose case flips far more often than in identifiers (CamelCase flips once per word)."""
    if not token.isalpha() or _entropy(token) < 4.0:
        return False
    flips = sum(a.islower() != b.islower() for a, b in itertools.pairwise(token))
    return flips >= len(token) / 3


def _keyword_end(text: str, low: str, kw: re.Match[str]) -> int | None:
    """Where the name the keyword match stands in ends (after `_KEY`, `_PROD`: SECRET_KEY = ...), or None when
    it names no secret: the keyword sits inside a word (monkey, bypass), or the identifier around it means
    something else (password_hash, bucket_key, publicKey). A keyword may end an identifier: DB_PASSWORD,
    adminPassword."""
    start, end = kw.span()
    before = low[start - 1] if start else " "
    camel = before.isalnum() and text[start].isupper() and not text[start - 1].isupper()
    if before.isalnum() and not camel:
        return None
    tail = end
    while tail < len(low) and low[tail] in "_.-" and (m := _TOKEN_TAIL_RE.match(low, tail + 1)):
        if m.group() not in _KEYWORD_TAILS and not m.group().isdigit():
            return None
        tail = m.end()
    head = ""
    if camel or before in "_.-":
        run_end = start if camel else start - 1
        run_start = run_end
        while run_start > 0 and text[run_start - 1].isalnum():
            run_start -= 1
        parts = _NAME_SPLIT_RE.findall(text[run_start:run_end])
        head = parts[-1].lower() if parts else ""
    if head in _PUBLIC_HEADS or (kw.group().rstrip("s") == "key" and head and head not in _KEY_HEADS):
        return None
    return tail


def _provider_finding(text: str, start: int) -> Finding | None:
    """A provider key starting at `start`, scored by its kind; None for none or a look-alike."""
    m = _PROVIDER_RE.match(text, start)
    kind = m.lastgroup if m else None  # the outermost named group: the one that closed last
    if m is None or kind is None or kind == "private_key":
        return None
    value = m.group()
    if kind == "openai" and not any(c.isdigit() for c in value):
        return None  # `sk-this-is-just-a-long-slug` is prose; keys mix digits in
    if kind == "jwt" and not _jwt_header_ok(value):
        return None
    if kind == "aws" and len(set(value[4:])) <= 3:
        return None  # AKIAXXXXXXXXXXXXXXXX: a slot for a key (the documentation's AKIA...EXAMPLE has a key's shape)
    return Finding("secret", m.start(), m.end(), _SECRET_WEIGHTS[kind])


def _jwt_header_ok(token: str) -> bool:
    """A JWT's first segment decodes to a JSON object naming its algorithm or type (a token, not a look-alike)."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError):  # binascii.Error and JSONDecodeError are ValueErrors
        return False
    return isinstance(header, dict) and ("alg" in header or "typ" in header)


def _credential_finding(text: str, m: re.Match[str]) -> Finding | None:
    """The password of `-u user:password` or `scheme://user:password@host`."""
    user, value = m.group(1), m.group(2)
    if _placeholder(value) or value.startswith(("{", "%", "#")) or value.lower() == user.lower():
        return None  # a slot, a template, or demo credentials (postgres:postgres, test:test)
    return Finding("secret", m.start(2), m.end(2), 0.5 if value.isalpha() else 0.85)


def _secret_after_keyword(text: str, kw: re.Match[str], kw_end: int) -> tuple[Finding | None, int]:
    """The secret among the few tokens after a keyword (whose name ends at `kw_end`), and where the first of
    those tokens ends."""
    kind = _keyword_kind(kw.group())
    quoted = _QUOTED_VALUE_RE.match(text, kw_end)
    if quoted:
        group = 1 if quoted.group(1) is not None else 2
        start = quoted.start(group)
        if scheme := _AUTH_SCHEME_RE.match(text, start, quoted.end(group)):
            start = scheme.end()  # "Authorization": "Bearer VALUE"
        value = text[start : quoted.end(group)]
        found = _provider_finding(text, start)
        # A value that starts with `,` or `;` came after a closing quote: `"Password:", next: "..."`.
        if found is None and value == value.strip() and value[:1] not in (",", ";"):
            score = _token_score(value, kind, assigned=True, first=True, quoted=True)
            if score is not None and not near(_HASH_CONTEXT, text, kw.start(), quoted.end()):
                found = Finding("secret", start, quoted.end(group), score)
        if found is not None:
            return found, found.end
    first_end = kw_end
    for i, tm in enumerate(_TOKEN_RE.finditer(text, kw_end)):
        if i >= _TOKENS_AFTER_KEYWORD or tm.start() - kw_end > CONTEXT_CHARS:
            break
        if i == 0:
            first_end = tm.end()
        raw = tm.group()
        particle = _HANGUL_PARTICLE_RE.match(raw)
        stripped = raw[particle.end() :] if particle else raw
        stripped = stripped.lstrip(":=")
        start = tm.start() + len(raw) - len(stripped)
        token = stripped.rstrip(".,!?:;")
        if len(token) < 6:
            continue
        found = _provider_finding(text, start)
        if found is not None:
            return found, found.end
        between = text[kw_end:start]
        assigned = _ASSIGN_RE.fullmatch(between) is not None
        score = _token_score(token, kind, assigned=assigned, first=i == 0)
        if score is None or near(_HASH_CONTEXT, text, kw.start(), tm.end()):
            continue
        return Finding("secret", start, start + len(token), score), start + len(token)
    return None, first_end


def _credential_or_named_secret(text: str, low: str, t: re.Match[str]) -> tuple[Finding | None, int]:
    """At a trigger that starts no provider key: credentials in a URL or a `-u` argument, or the value after a
    secret's name; and how far the text was read (not to be read again)."""
    start = t.start()
    if low.startswith("://", start):
        m = _URL_CREDENTIALS_RE.match(text, start)
        return (_credential_finding(text, m), m.end()) if m else (None, 0)  # `user:pass@` is not read again
    if low.startswith(("-u", "--user"), start):
        standalone = start == 0 or low[start - 1].isspace()
        m = _USER_ARG_RE.match(text, start) if standalone else None
        return (_credential_finding(text, m), 0) if m else (None, 0)
    if _SECRET_KEYWORD_RE.fullmatch(low, start, t.end()) and (kw_end := _keyword_end(text, low, t)):
        return _secret_after_keyword(text, t, kw_end)
    return None, 0


def detect_secrets(text: str | Scan) -> list[Finding]:
    scan = as_scan(text)
    text, low = scan.text, scan.low
    out: list[Finding] = []
    # End of the last key, or of the run a keyword was glued to: keywords inside it (a PEM body, `key:key:...`)
    # are not looked at again, which keeps the scan linear.
    covered = 0
    footer: tuple[int, int] = (-1, -1)  # (start, end) of the next PEM footer: searched once, not per header
    for t in _SECRET_TRIGGER.finditer(low):
        if t.start() < covered:
            continue
        found: Finding | None = None
        if text.startswith("-----BEGIN ", t.start()) and (m := _PROVIDER_RE.match(text, t.start())):
            if footer[0] < m.end():
                fm = _PEM_FOOTER_RE.search(text, m.end())
                footer = (fm.start(), fm.end()) if fm else (len(text), -1)
            # The whole block when its footer follows, else the header alone (a truncated paste).
            end = footer[1] if footer[1] > 0 and footer[0] - m.end() <= _PEM_MAX_BODY else m.end()
            found = Finding("secret", m.start(), end, _SECRET_WEIGHTS["private_key"])
        elif (found := _provider_finding(text, t.start())) is None:
            found, read_to = _credential_or_named_secret(text, low, t)
            covered = max(covered, read_to)
        if found is not None:
            out.append(found)
            covered = max(covered, found.end)
    return out
