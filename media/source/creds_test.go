package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// A password that happens to be text of a message must neither show up as
// the gaps of a mangled message nor be searched for at all: the message
// with credentials is the very message without them.
func TestCredentialsNeverShapeMessages(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a refused connection: the message holds "dial tcp" and the address

	// lastError runs a source until it has failed twice and returns its
	// LastError and log, with the varying retry delays taken out.
	delay := regexp.MustCompile(`in=[0-9.]+m?s`)
	lastError := func(t *testing.T, rawURL string, cred Credentials) (string, string) {
		t.Helper()
		var logs bytes.Buffer
		src, err := Open(rawURL, Options{
			Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime})),
			Backoff:     Backoff{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond},
			Credentials: cred,
		})
		if err != nil {
			t.Fatal(err)
		}
		cancel, result := run(t, src, &collector{})
		waitFor(t, 10*time.Second, "2 reconnects", func() bool { return src.Stats().Reconnects >= 2 })
		cancel()
		if err := result(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
		// How many retries a run logs varies: compare the distinct lines.
		lines := strings.Split(delay.ReplaceAllString(logs.String(), "in=?"), "\n")
		slices.Sort(lines)
		return src.Stats().LastError, strings.Join(slices.Compact(lines), "\n")
	}
	plainErr, plainLog := lastError(t, "rtsp://"+addr+"/s", Credentials{})
	if !strings.Contains(plainErr, "dial tcp "+addr) {
		t.Fatalf("LastError = %q; the test needs a message naming the dial", plainErr)
	}
	for _, pass := range []string{"dial", "tcp", "ab", "127.0.0.1", "s", "Zq9-unique"} {
		for _, how := range []string{"url", "options"} {
			t.Run(pass+"/"+how, func(t *testing.T) {
				u, cred := "rtsp://admin:"+pass+"@"+addr+"/s", Credentials{}
				if how == "options" {
					u, cred = "rtsp://"+addr+"/s", Credentials{User: "admin", Password: pass}
				}
				gotErr, gotLog := lastError(t, u, cred)
				if gotErr != plainErr {
					t.Errorf("LastError with password %q = %q, want %q", pass, gotErr, plainErr)
				}
				if gotLog != plainLog {
					t.Errorf("log with password %q:\n%s\nwant:\n%s", pass, gotLog, plainLog)
				}
				if strings.Contains(gotErr+gotLog, "xxxxx") {
					t.Errorf("a message was mangled: %q %s", gotErr, gotLog)
				}
			})
		}
	}
	if strings.Contains(plainErr+plainLog, "Zq9-unique") {
		t.Fatal("unreachable")
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestCredentialsInOptionsLogIn(t *testing.T) {
	fx := loadFixture(t)
	cam := &testCamera{t: t, fx: fx, auth: "digest", user: "admin", pass: testPass}
	cred := Credentials{User: "admin", Password: testPass}
	for _, v := range []string{fmt.Sprint(cred), fmt.Sprintf("%v %+v %#v %s", cred, Options{Credentials: cred}, cred, cred)} {
		if strings.Contains(v, testPass) {
			t.Errorf("formatting credentials shows the password: %s", v)
		}
	}
	u := cam.url("", "")
	if _, err := Open(strings.Replace(u, "rtsp://", "rtsp://admin:"+testPass+"@", 1), Options{Credentials: cred}); !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), testPass) {
		t.Errorf("credentials given twice: %v", err)
	}
	src, err := Open(u, Options{Credentials: cred})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	cancel, result := run(t, src, c)
	waitFor(t, 10*time.Second, "30 frames", func() bool { return c.len() >= 30 })
	cancel()
	if err := result(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if n := cam.badAuth.Load(); n != 0 {
		t.Errorf("camera saw %d requests with wrong credentials", n)
	}
}
