package onvif

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// Namespaces of the messages used here.
const (
	nsSOAP12 = "http://www.w3.org/2003/05/soap-envelope"
	nsSOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
	nsWSSE   = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	nsWSU    = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
	nsDevice = "http://www.onvif.org/ver10/device/wsdl"
	nsMedia  = "http://www.onvif.org/ver10/media/wsdl"
	nsSchema = "http://www.onvif.org/ver10/schema"

	passwordDigest = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
	base64Binary   = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)

// MaxResponse bounds a SOAP response's body.
const MaxResponse = 1 << 20

// Errors callers branch on.
var (
	// ErrNotAuthorized: the device refused the user or password (a SOAP
	// ter:NotAuthorized fault, or HTTP 401 after digest authentication).
	ErrNotAuthorized = errors.New("wrong user or password")
	// ErrFault is any other SOAP fault.
	ErrFault = errors.New("the device answered with a SOAP fault")
)

// Fault is a SOAP fault a device answered, its texts cleaned.
type Fault struct {
	Code    string // env:Sender, env:Receiver, …
	Subcode string // the innermost subcode, e.g. ter:NotAuthorized
	Reason  string
}

func (f *Fault) Error() string {
	s := f.Code
	if f.Subcode != "" {
		s += "/" + f.Subcode
	}
	if f.Reason != "" {
		s += " (" + f.Reason + ")"
	}
	if f.notAuthorized() {
		s += ": " + ErrNotAuthorized.Error() + " (or the device's clock is far from the time it reported)"
	}
	return "SOAP fault " + s
}

func (f *Fault) Is(target error) bool {
	return target == ErrFault || target == ErrNotAuthorized && f.notAuthorized()
}

func (f *Fault) notAuthorized() bool {
	return localName(f.Subcode) == "NotAuthorized" || localName(f.Code) == "NotAuthorized"
}

// localName is a QName's part after its prefix.
func localName(q string) string {
	if i := strings.LastIndexByte(q, ':'); i >= 0 {
		return q[i+1:]
	}
	return q
}

// clean makes device text fit for an error: printable, one line, at most
// 200 runes.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range strings.TrimSpace(s) {
		if n == 200 {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			r = ' '
		case !unicode.IsPrint(r):
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// xmlText escapes s for an XML text node or attribute.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// usernameToken is the WS-Security header for user and password at the
// device time created: the password itself is never sent, only
// Base64(SHA-1(nonce + created + password)).
func usernameToken(user, password string, created time.Time) string {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	ts := created.UTC().Format("2006-01-02T15:04:05.000Z")
	h := sha1.New()
	h.Write(nonce)
	h.Write([]byte(ts))
	h.Write([]byte(password))
	return `<wsse:Security s:mustUnderstand="1" xmlns:wsse="` + nsWSSE + `" xmlns:wsu="` + nsWSU + `"><wsse:UsernameToken>` +
		`<wsse:Username>` + xmlText(user) + `</wsse:Username>` +
		`<wsse:Password Type="` + passwordDigest + `">` + base64.StdEncoding.EncodeToString(h.Sum(nil)) + `</wsse:Password>` +
		`<wsse:Nonce EncodingType="` + base64Binary + `">` + base64.StdEncoding.EncodeToString(nonce) + `</wsse:Nonce>` +
		`<wsu:Created>` + ts + `</wsu:Created></wsse:UsernameToken></wsse:Security>`
}

// envelope wraps body (an element using the prefixes tds, trt and tt) in a
// SOAP 1.2 envelope with header inside.
func envelope(header, body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` +
		`<s:Envelope xmlns:s="` + nsSOAP12 + `" xmlns:tds="` + nsDevice + `" xmlns:trt="` + nsMedia + `" xmlns:tt="` + nsSchema + `">` +
		`<s:Header>` + header + `</s:Header><s:Body>` + body + `</s:Body></s:Envelope>`)
}

// call posts one SOAP request (op names it in errors; action is its SOAP
// action) to url and decodes the response's body element into out. It
// authenticates with a UsernameToken when the client has a user, and
// answers an HTTP Digest challenge once.
func (c *Client) call(ctx context.Context, url, op, action, body string, out any) error {
	err := c.callOnce(ctx, url, action, body, out)
	if err != nil {
		return fmt.Errorf("onvif: %s at %s: %w", op, url, err)
	}
	return nil
}

func (c *Client) callOnce(ctx context.Context, url, action, body string, out any) error {
	var auth string
	for attempt := 0; ; attempt++ {
		header := ""
		if c.User != "" {
			header = usernameToken(c.User, c.Password, time.Now().Add(c.offset))
		}
		req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(envelope(header, body)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", `application/soap+xml; charset=utf-8; action="`+action+`"`)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.httpClient().Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading the response: %w", err)
		}
		if len(b) > MaxResponse {
			return fmt.Errorf("the response is larger than %d bytes", MaxResponse)
		}
		if resp.StatusCode == http.StatusUnauthorized {
			if attempt > 0 || c.User == "" {
				return fmt.Errorf("HTTP 401: %w", ErrNotAuthorized)
			}
			ch, err := parseDigestChallenge(resp.Header.Values("WWW-Authenticate"))
			if err != nil {
				return fmt.Errorf("HTTP 401 and %w", err)
			}
			auth = ch.authorization(c.User, c.Password, "POST", req.URL.RequestURI())
			continue
		}
		if resp.StatusCode != http.StatusOK {
			// A fault comes with 400 or 500; anything else is no SOAP.
			if err := decodeSOAP(b, nil); err != nil && errors.Is(err, ErrFault) {
				return err
			}
			return fmt.Errorf("HTTP status %d", resp.StatusCode)
		}
		return decodeSOAP(b, out)
	}
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// defaultHTTP follows no redirect, so credentials and digests go only to
// the address the operator gave.
var defaultHTTP = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// soapFault is a SOAP 1.2 fault, or a 1.1 one (faultcode, faultstring).
type soapFault struct {
	Code struct {
		Value   string       `xml:"Value"`
		Subcode *soapSubcode `xml:"Subcode"`
	} `xml:"Code"`
	Reason []struct {
		Text string `xml:",chardata"`
	} `xml:"Reason>Text"`
	FaultCode   string `xml:"faultcode"`
	FaultString string `xml:"faultstring"`
}

type soapSubcode struct {
	Value   string       `xml:"Value"`
	Subcode *soapSubcode `xml:"Subcode"`
}

// decodeSOAP finds the first element of b's SOAP body: a fault becomes a
// *Fault error; anything else is decoded into out (nil: ignored). An
// envelope without a body element, or malformed XML, is an error.
func decodeSOAP(b []byte, out any) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	depth, inBody := 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return errors.New("the response is no SOAP envelope with a body")
		}
		if err != nil {
			return fmt.Errorf("malformed XML in the response: %s", clean(err.Error()))
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			soap := t.Name.Space == nsSOAP12 || t.Name.Space == nsSOAP11
			switch {
			case depth == 1 && !(soap && t.Name.Local == "Envelope"):
				return errors.New("the response is no SOAP envelope")
			case depth == 2 && soap && t.Name.Local == "Body":
				inBody = true
			case depth == 2:
				if err := d.Skip(); err != nil {
					return fmt.Errorf("malformed XML in the response: %s", clean(err.Error()))
				}
				depth--
			case depth == 3 && inBody && soap && t.Name.Local == "Fault":
				var f soapFault
				if err := d.DecodeElement(&f, &t); err != nil {
					return fmt.Errorf("malformed SOAP fault: %s", clean(err.Error()))
				}
				return f.toError()
			case depth == 3 && inBody:
				if out == nil {
					return nil
				}
				if err := d.DecodeElement(out, &t); err != nil {
					return fmt.Errorf("malformed XML in %s: %s", clean(t.Name.Local), clean(err.Error()))
				}
				return nil
			}
		case xml.EndElement:
			depth--
			if inBody && depth == 1 {
				return errors.New("the response's SOAP body is empty")
			}
		}
	}
}

func (f *soapFault) toError() *Fault {
	out := &Fault{Code: clean(f.Code.Value), Reason: ""}
	for s, n := f.Code.Subcode, 0; s != nil && n < 8; s, n = s.Subcode, n+1 {
		out.Subcode = clean(s.Value)
	}
	if len(f.Reason) > 0 {
		out.Reason = clean(f.Reason[0].Text)
	}
	if out.Code == "" {
		out.Code, out.Reason = clean(f.FaultCode), clean(f.FaultString)
	}
	return out
}
