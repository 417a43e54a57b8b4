// Package console owns `custos console`: the admins' browser UI. It runs in
// its own process, served on a loopback address only, and is a client of
// the node in its data directory through the node's local API, as the CLI
// is; the node process never holds an admin's key.
//
// An admin logs in by unlocking the admin key file the console was started
// with, with its passphrase. The unlocked key stays in this process's
// memory for that session only and is zeroed on logout, after the idle
// timeout, and when the console stops. Everything the browser sends is
// untrusted:
//   - the Host header must name the console's own loopback address (a page
//     elsewhere cannot reach it through DNS rebinding);
//   - every page but the login page and the static assets needs a session,
//     whose cookie is HttpOnly, Secure, SameSite=Strict and 256 random bits
//     (looked up by its hash, so no comparison leaks it);
//   - every state change is a POST carrying the session's CSRF token (compared
//     in constant time) from the console's own origin;
//   - every page is html/template (escaped) with a strict Content-Security-
//     Policy: scripts and styles from the console itself only, no inline
//     code, nothing framed; all assets are embedded (no CDN).
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/live"
)

// Config configures a console.
type Config struct {
	Dir     string         // the data directory of the node it works through
	KeyFile string         // the admin key file a login unlocks
	Listen  netip.AddrPort // a loopback address; port 0 picks one
	// Idle ends a session after this long without a request (default 15
	// minutes); MaxSession ends it regardless (default 8 hours).
	Idle       time.Duration
	MaxSession time.Duration
	// Exports is where the console has the node write the exports it
	// plays (default DIR/exports).
	Exports string
	Logf    func(format string, a ...any)

	// liveVia is where live tiles read a camera's stream (node.LiveVia);
	// tests put a camera of another codec there.
	liveVia func(ctx context.Context, dir, camera string, out io.Writer) (live.Result, error)
}

// Defaults.
const (
	DefaultIdle       = 15 * time.Minute
	DefaultMaxSession = 8 * time.Hour
	// maxForm bounds every request body the console reads.
	maxForm = 64 << 10
	// maxSessions bounds how many sessions one console keeps.
	maxSessions  = 16
	cookieName   = "custos_session"
	csrfField    = "csrf"
	loginBackoff = 500 * time.Millisecond
)

//go:embed static
var staticFiles embed.FS

// Server is a running console.
type Server struct {
	cfg   Config
	ln    net.Listener
	srv   *http.Server
	hosts map[string]bool // Host headers that name this console
	pages *pages
	wa    *webauthn.WebAuthn // the relying party of the console's passkeys

	mu       sync.Mutex
	sessions map[string]*session // by hex SHA-256 of the cookie's value
	login    sync.Mutex          // one passphrase tried at a time
	done     chan struct{}
}

// session is one logged-in admin.
type session struct {
	key     *keys.AdminKey
	user    string
	csrf    string
	lang    string
	started time.Time
	last    time.Time
	flash   string // the last action's outcome, shown once
	live    []*livePeer
	// The passkey ceremony under way, if any.
	enrol    *pendingEnrolment
	approval *pendingApproval
}

// end zeroes the session's key and stops its live views.
func (ss *session) end() {
	ss.key.Close()
	for _, l := range ss.live {
		l.cancel()
	}
}

// ErrNotLoopback refuses a listen address off the machine.
var ErrNotLoopback = errors.New("the console serves a loopback address only (127.0.0.1, ::1); reach it from elsewhere through an SSH tunnel")

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.KeyFile == "" {
		return nil, errors.New("console: a node directory and an admin key file are required")
	}
	if !cfg.Listen.IsValid() {
		cfg.Listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 8080)
	}
	if !cfg.Listen.Addr().IsLoopback() {
		return nil, fmt.Errorf("console: %s: %w", cfg.Listen, ErrNotLoopback)
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.MaxSession <= 0 {
		cfg.MaxSession = DefaultMaxSession
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.liveVia == nil {
		cfg.liveVia = node.LiveVia
	}
	if cfg.Exports == "" {
		cfg.Exports = filepath.Join(cfg.Dir, "exports")
	}
	// The node writes the export: it needs the absolute path.
	var err error
	if cfg.Exports, err = filepath.Abs(cfg.Exports); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	s := &Server{cfg: cfg, ln: ln, sessions: map[string]*session{}, done: make(chan struct{}),
		hosts: map[string]bool{"localhost:" + port: true, "127.0.0.1:" + port: true, "[::1]:" + port: true}}
	if s.wa, err = newRelyingParty(s.URL()); err != nil {
		ln.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	if s.pages, err = newPages(s); err != nil {
		ln.Close()
		return nil, err
	}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go s.srv.Serve(ln)
	go s.expire()
	return s, nil
}

// URL is the console's address as a browser should open it: localhost,
// which WebAuthn accepts as a secure origin over plain HTTP.
func (s *Server) URL() string {
	return "http://localhost:" + strconv.Itoa(s.ln.Addr().(*net.TCPAddr).Port)
}

// Close stops serving and zeroes every session's key.
func (s *Server) Close() error {
	close(s.done)
	err := s.srv.Close()
	s.mu.Lock()
	for id, ss := range s.sessions {
		ss.end()
		delete(s.sessions, id)
	}
	s.mu.Unlock()
	return err
}

// expire ends idle and old sessions, zeroing their keys.
func (s *Server) expire() {
	t := time.NewTicker(min(s.cfg.Idle/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

// sweep ends the sessions stale at now and forgets their old tiles.
func (s *Server) sweep(now time.Time) {
	s.mu.Lock()
	for id, ss := range s.sessions {
		if s.stale(ss, now) {
			ss.end()
			delete(s.sessions, id)
			continue
		}
		// Forget the tiles that ended a while ago.
		ss.live = slices.DeleteFunc(ss.live, func(l *livePeer) bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.state == "ended" && now.Sub(l.ended) > liveStateKeep
		})
	}
	s.mu.Unlock()
}

func (s *Server) stale(ss *session, now time.Time) bool {
	return now.Sub(ss.last) > s.cfg.Idle || now.Sub(ss.started) > s.cfg.MaxSession
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.pages.loginPage)
	mux.HandleFunc("POST /login", s.pages.loginPost)
	mux.HandleFunc("POST /logout", s.authed(s.pages.logout))
	mux.HandleFunc("POST /lang", s.authed(s.pages.setLang))
	mux.HandleFunc("GET /{$}", s.authed(s.pages.overview))
	mux.HandleFunc("GET /cameras", s.authed(s.pages.cameras))
	mux.HandleFunc("GET /live", s.authed(s.pages.livePage))
	mux.HandleFunc("POST /live/offer", s.authed(s.pages.liveOffer))
	mux.HandleFunc("GET /live/{id}", s.authed(s.pages.liveStatus))
	mux.HandleFunc("GET /requests", s.authed(s.pages.requests))
	mux.HandleFunc("POST /requests", s.authed(s.pages.openRequest))
	mux.HandleFunc("POST /requests/{id}/approve", s.authed(s.pages.approve))
	mux.HandleFunc("POST /requests/{id}/passkey/begin", s.authed(s.pages.approveBegin))
	mux.HandleFunc("POST /requests/{id}/passkey/finish", s.authed(s.pages.approveFinish))
	mux.HandleFunc("POST /requests/{id}/deny", s.authed(s.pages.deny))
	mux.HandleFunc("POST /requests/{id}/export", s.authed(s.pages.export))
	mux.HandleFunc("GET /exports/{id}", s.authed(s.pages.exportPage))
	mux.HandleFunc("GET /exports/{id}/video.mp4", s.authed(s.pages.exportVideo))
	mux.HandleFunc("GET /invites", s.authed(s.pages.invites))
	mux.HandleFunc("POST /invites", s.authed(s.pages.invite))
	mux.HandleFunc("GET /grants", s.authed(s.pages.grants))
	mux.HandleFunc("GET /passkeys", s.authed(s.pages.passkeysPage))
	mux.HandleFunc("POST /passkeys/begin", s.authed(s.pages.enrolBegin))
	mux.HandleFunc("POST /passkeys/finish", s.authed(s.pages.enrolFinish))
	mux.HandleFunc("POST /passkeys/{id}/remove", s.authed(s.pages.removePasskey))
	mux.HandleFunc("GET /audit", s.authed(s.pages.audit))
	mux.HandleFunc("GET /gdpr", s.authed(s.pages.gdpr))
	return s.guard(mux)
}

// guard checks the Host header and sets the headers every answer carries.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; media-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on its own form posts, which the CSRF check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if !s.hosts[r.Host] {
			http.Error(w, "this console answers only to its own loopback address", http.StatusMisdirectedRequest)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		next.ServeHTTP(w, r)
	})
}

// ctxKey carries the session in a request's context.
type ctxKey struct{}

// authed lets a request through only with a live session; a state change
// also needs the session's CSRF token and the console's own origin.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.sessionOf(r)
		if ss == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "no session: log in again", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet {
			if o := r.Header.Get("Origin"); o != "" && !s.hosts[strings.TrimPrefix(o, "http://")] {
				http.Error(w, "refused: the request comes from another site", http.StatusForbidden)
				return
			}
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
				http.Error(w, "refused: the request comes from another site", http.StatusForbidden)
				return
			}
			tok := r.PostFormValue(csrfField)
			if tok == "" {
				tok = r.Header.Get("X-CSRF-Token")
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(ss.csrf)) != 1 {
				http.Error(w, "refused: the form's CSRF token is missing or wrong (reload the page)", http.StatusForbidden)
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ss)), ss)
	}
}

// sessionOf is the live session the request's cookie names, or nil.
func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) > 64 {
		return nil
	}
	id := hashID(c.Value)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return nil
	}
	if s.stale(ss, now) {
		ss.end()
		delete(s.sessions, id)
		return nil
	}
	ss.last = now
	return ss
}

func hashID(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newSession keeps k for user and returns the cookie value; the oldest
// session goes when there are too many.
func (s *Server) newSession(k *keys.AdminKey, user, lang string) string {
	v := randomToken()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= maxSessions {
		var oldest string
		for id, ss := range s.sessions {
			if oldest == "" || ss.last.Before(s.sessions[oldest].last) {
				oldest = id
			}
		}
		s.sessions[oldest].end()
		delete(s.sessions, oldest)
	}
	s.sessions[hashID(v)] = &session{key: k, user: user, csrf: randomToken(), lang: lang, started: now, last: now}
	return v
}

// endSession zeroes and forgets the request's session.
func (s *Server) endSession(r *http.Request) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return
	}
	id := hashID(c.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[id]; ss != nil {
		ss.end()
		delete(s.sessions, id)
	}
}

func setSessionCookie(w http.ResponseWriter, v string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}
