package source

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// auth answers a camera's WWW-Authenticate challenge: Basic, or Digest per
// RFC 2617 / RFC 7616 with MD5 or SHA-256 (preferred when offered) and
// either qop=auth or no qop. It is used only after a 401, so credentials
// never go to a camera that did not ask for them.
type auth struct {
	user, pass string

	scheme                          string // "", "basic" or "digest"
	realm, nonce, opaque, algorithm string
	qopAuth                         bool
	nc                              int
}

// challenge adopts the best of the offered challenges (Digest over Basic).
func (a *auth) challenge(values []string) error {
	var basic bool
	var best *auth
	for _, v := range values {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
		switch strings.ToLower(scheme) {
		case "digest":
			p := parseAuthParams(rest)
			alg := strings.ToUpper(p["algorithm"])
			if alg != "" && alg != "MD5" && alg != "SHA-256" {
				continue // e.g. MD5-sess, SHA-512-256
			}
			if best != nil && (best.algorithm == "SHA-256" || alg != "SHA-256") {
				continue // keep the first of the strongest
			}
			if p["nonce"] == "" {
				continue
			}
			qopAuth := false
			if q, ok := p["qop"]; ok {
				for _, o := range strings.Split(q, ",") {
					qopAuth = qopAuth || strings.TrimSpace(o) == "auth"
				}
				if !qopAuth {
					continue // only auth-int offered
				}
			}
			best = &auth{user: a.user, pass: a.pass, scheme: "digest",
				realm: p["realm"], nonce: p["nonce"], opaque: p["opaque"], algorithm: alg, qopAuth: qopAuth}
		case "basic":
			basic = true
		}
	}
	if best != nil {
		*a = *best
		return nil
	}
	if basic {
		a.scheme = "basic"
		return nil
	}
	return fmt.Errorf("%w: camera offers no authentication scheme Custos speaks (Basic, Digest MD5 or SHA-256)", ErrUnauthorized)
}

// header returns the Authorization value for a request, "" before any
// challenge.
func (a *auth) header(method, uri string) string {
	switch a.scheme {
	case "basic":
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.user+":"+a.pass))
	case "digest":
		h := md5hex
		if a.algorithm == "SHA-256" {
			h = sha256hex
		}
		ha1 := h(a.user + ":" + a.realm + ":" + a.pass)
		ha2 := h(method + ":" + uri)
		var b strings.Builder
		fmt.Fprintf(&b, `Digest username=%s, realm=%s, nonce=%s, uri=%s`, quote(a.user), quote(a.realm), quote(a.nonce), quote(uri))
		if a.qopAuth {
			a.nc++
			nc := fmt.Sprintf("%08x", a.nc)
			cnonce := randHex(8)
			resp := h(ha1 + ":" + a.nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
			fmt.Fprintf(&b, `, response="%s", qop=auth, nc=%s, cnonce="%s"`, resp, nc, cnonce)
		} else {
			fmt.Fprintf(&b, `, response="%s"`, h(ha1+":"+a.nonce+":"+ha2))
		}
		if a.opaque != "" {
			fmt.Fprintf(&b, `, opaque=%s`, quote(a.opaque))
		}
		if a.algorithm != "" {
			b.WriteString(", algorithm=" + a.algorithm)
		}
		return b.String()
	}
	return ""
}

// quote makes an RFC 2617 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// parseAuthParams parses `k=v, k="quoted, value"` lists (RFC 2617 1.2).
// Keys are lower-cased; malformed input yields whatever parsed cleanly.
func parseAuthParams(s string) map[string]string {
	p := make(map[string]string)
	for len(p) < 32 {
		s = strings.TrimLeft(s, " \t,")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return p
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			val = b.String()
			s = s[min(i+1, len(s)):]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val = strings.TrimSpace(s[:end])
			s = s[end:]
		}
		p[key] = val
	}
	return p
}
