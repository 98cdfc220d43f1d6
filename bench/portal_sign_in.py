#!/usr/bin/env python3
"""Signs in to the portal as a browser would and prints the session cookie's value.
A practitioner's first sign-in enrols TOTP: the key is read from the enrolment page and the
code computed here (RFC 6238, SHA-1, 30 s, 6 digits), as the browser tests' harness does.
    bench/portal_sign_in.py BASE USERNAME PASSWORD [TOTP_KEY_FILE]
"""
import base64, hashlib, hmac, html, re, struct, sys, time
import urllib.error, urllib.parse, urllib.request

base, username, password = sys.argv[1:4]
# With a fourth argument, the TOTP key is written to that file at enrolment and read from it at
# later sign-ins (bench/portal-pair.sh signs the clinician in again on each node it starts).
key_file = sys.argv[4] if len(sys.argv) > 4 else None
# The node's cookies are `Secure`, which Python's cookie jar will not send over plain HTTP
# (a browser treats loopback as secure): they are kept here, by name.
cookies = {}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def fetch(path, form=None):
    """The page at `path` (a form POSTed when given), following redirects by hand."""
    for _ in range(5):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(base + path, data=data)
        if cookies:
            req.add_header('Cookie', '; '.join(f'{k}={v}' for k, v in cookies.items()))
        try:
            r = opener.open(req, timeout=30)
        except urllib.error.HTTPError as e:
            if e.code not in (302, 303):
                raise
            r = e
        for h in r.headers.get_all('Set-Cookie') or []:
            name, _, rest = h.partition('=')
            cookies[name.strip()] = rest.split(';', 1)[0]
        if r.status in (302, 303):
            path, form = r.headers['Location'], None
            continue
        return r.read().decode()
    sys.exit('too many redirects')


def csrf_of(page):
    m = re.search(r'name="csrf" value="([^"]*)"', page)
    if not m:
        sys.exit('no CSRF token on the page')
    return html.unescape(m.group(1))


def totp(uri):
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)['secret'][0]
    key = base64.b32decode(secret.upper() + '=' * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack('>Q', int(time.time()) // 30), hashlib.sha1).digest()
    at = mac[-1] & 0xF
    return '%06d' % ((struct.unpack('>I', mac[at:at + 4])[0] & 0x7FFFFFFF) % 1_000_000)


page = fetch('/login')
page = fetch('/login', {'csrf': csrf_of(page), 'next': '/home',
                        'username': username, 'password': password})
enrol = re.search(r'<code class="wrap">(otpauth://[^<]*)</code>', page)
if enrol:
    uri = html.unescape(enrol.group(1))
    if key_file:
        with open(key_file, 'w') as f:
            f.write(uri + '\n')
    page = fetch('/login/code', {'csrf': csrf_of(page), 'next': '/home', 'code': totp(uri)})
elif key_file and 'action="/login/code"' in page:
    # Enrolled at an earlier sign-in: the key kept then. A code is accepted once, so a second
    # sign-in within the same 30 s step waits for the next.
    with open(key_file) as f:
        uri = f.read().strip()
    time.sleep(30 - time.time() % 30 + 0.5)
    page = fetch('/login/code', {'csrf': csrf_of(page), 'next': '/home', 'code': totp(uri)})
session = cookies.get('medmesh_session')
if not session:
    sys.exit('could not sign in as ' + username)
print(session)
