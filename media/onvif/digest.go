package onvif

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
)

// digestChallenge is an HTTP Digest challenge (RFC 7616) a device sent.
type digestChallenge struct {
	realm, nonce, opaque, algorithm string
	qopAuth                         bool // qop offered includes auth
}

// parseDigestChallenge takes the first Digest challenge of a 401's
// WWW-Authenticate headers (devices often offer Basic too, which is never
// used: it would send the password).
func parseDigestChallenge(headers []string) (*digestChallenge, error) {
	for _, h := range headers {
		if len(h) > 4096 {
			continue
		}
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Digest") {
			continue
		}
		p := parseAuthParams(rest)
		ch := &digestChallenge{realm: p["realm"], nonce: p["nonce"], opaque: p["opaque"], algorithm: p["algorithm"]}
		for q := range strings.SplitSeq(p["qop"], ",") {
			if strings.TrimSpace(q) == "auth" {
				ch.qopAuth = true
			}
		}
		if ch.nonce == "" {
			return nil, errors.New("an HTTP Digest challenge without a nonce")
		}
		switch strings.ToUpper(ch.algorithm) {
		case "", "MD5", "SHA-256":
		default:
			return nil, errors.New("an HTTP Digest challenge with an unsupported algorithm " + clean(ch.algorithm))
		}
		return ch, nil
	}
	return nil, errors.New("no HTTP Digest challenge (only Digest is answered, never Basic)")
}

// parseAuthParams splits `k=v, k="v, w"` into a map; at most 16 pairs.
func parseAuthParams(s string) map[string]string {
	m := map[string]string{}
	for len(m) < 16 {
		s = strings.TrimLeft(s, " ,\t")
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				break
			}
			v, s = rest[1:1+end], rest[2+end:]
		} else {
			v, s, _ = strings.Cut(rest, ",")
			v = strings.TrimSpace(v)
		}
		m[k] = v
	}
	return m
}

// authorization is the Authorization header answering ch for one request.
func (ch *digestChallenge) authorization(user, password, method, uri string) string {
	newHash := md5.New
	alg := "MD5"
	if strings.EqualFold(ch.algorithm, "SHA-256") {
		newHash, alg = sha256.New, "SHA-256"
	}
	hx := func(s string) string { return hexHash(newHash(), s) }
	ha1 := hx(user + ":" + ch.realm + ":" + password)
	ha2 := hx(method + ":" + uri)
	b := []string{`username="` + quote(user) + `"`, `realm="` + quote(ch.realm) + `"`, `nonce="` + quote(ch.nonce) + `"`,
		`uri="` + quote(uri) + `"`, "algorithm=" + alg}
	if ch.qopAuth {
		c := make([]byte, 8)
		rand.Read(c)
		cnonce := hex.EncodeToString(c)
		b = append(b, "qop=auth", "nc=00000001", `cnonce="`+cnonce+`"`,
			`response="`+hx(ha1+":"+ch.nonce+":00000001:"+cnonce+":auth:"+ha2)+`"`)
	} else {
		b = append(b, `response="`+hx(ha1+":"+ch.nonce+":"+ha2)+`"`)
	}
	if ch.opaque != "" {
		b = append(b, `opaque="`+quote(ch.opaque)+`"`)
	}
	return "Digest " + strings.Join(b, ", ")
}

func hexHash(h hash.Hash, s string) string {
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// quote keeps a header's quoted string quoted.
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "").Replace(s)
}
