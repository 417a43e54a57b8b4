package source

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

const testPass = "s3cret-Pass"

// checkStream asserts frames are consecutive fixture frames (from a
// keyframe) 40 ms apart, byte for byte; skip lists fixture frames allowed
// to be missing, as [from, to) ranges on the first loop.
func checkStream(t *testing.T, fx *fixture, frames []h264.Frame, gap [2]int) {
	t.Helper()
	if len(frames) == 0 {
		t.Fatal("no frames")
	}
	prev := -1
	for i, f := range frames {
		idx := fx.index(t, f)
		fx.checkFrame(t, f, idx)
		switch {
		case prev < 0:
			if idx != 0 {
				t.Fatalf("first frame is fixture frame %d, want 0", idx)
			}
		case idx == (prev+1)%len(fx.aus):
		case prev == gap[0]-1 && idx == gap[1]:
		default:
			t.Fatalf("frame %d is fixture frame %d after %d; allowed gap %v", i, idx, prev, gap)
		}
		if prev >= 0 {
			want := time.Duration(idx-prev) * 40 * time.Millisecond
			if d := f.Time.Sub(frames[i-1].Time); d != want && idx > prev {
				t.Fatalf("frame %d: Time step %v, want %v", i, d, want)
			}
		}
		prev = idx
	}
}

func TestRTSPAuth(t *testing.T) {
	fx := loadFixture(t)
	for _, tc := range []struct {
		name, auth string
		user       string
	}{
		{"digest SHA-256 qop=auth", "digest", "admin"},
		{"digest MD5 qop=auth", "digest-md5", "admin"},
		{"digest without qop", "digest-noqop", "admin"},
		{"basic", "basic", "admin"},
		{"no auth", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := &testCamera{t: t, fx: fx, auth: tc.auth, user: tc.user, pass: testPass, sessionTimeout: 1}
			url := cam.url(tc.user, testPass)
			src, err := Open(url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			cancel, result := run(t, src, c)
			waitFor(t, 10*time.Second, "60 frames", func() bool { return c.len() >= 60 })
			// Session timeout 1 s: keep-alives every 500 ms, each authorized.
			waitFor(t, 5*time.Second, "a keep-alive", func() bool { return cam.keepAlives.Load() >= 1 })
			cancel()
			if err := result(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			waitFor(t, 5*time.Second, "TEARDOWN", func() bool { return cam.teardowns.Load() == 1 })
			if n := cam.badAuth.Load(); n != 0 {
				t.Errorf("camera saw %d requests with wrong credentials", n)
			}
			frames, _ := c.snapshot()
			checkStream(t, fx, frames, [2]int{})
			if st := src.Stats(); st.Reconnects != 0 || st.LastError != "" || st.Frames != uint64(len(frames)) {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestRTSPRejectedCredentials(t *testing.T) {
	fx := loadFixture(t)
	for _, tc := range []struct {
		name, user, pass, want string
	}{
		{"wrong password", "admin", "wrong-Pass-42", "check the user name and password"},
		{"no credentials", "", "", "requires a user name and password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := &testCamera{t: t, fx: fx, auth: "digest", user: "admin", pass: testPass}
			var logs bytes.Buffer
			src, err := Open(cam.url(tc.user, tc.pass), Options{
				Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			cancel, result := run(t, src, c)
			// Credentials can be fixed on the camera side: keep retrying.
			waitFor(t, 10*time.Second, "3 reconnects", func() bool { return src.Stats().Reconnects >= 3 })
			st := src.Stats()
			if !strings.Contains(st.LastError, tc.want) || !strings.Contains(st.LastError, ErrUnauthorized.Error()) {
				t.Errorf("LastError = %q, want it to say %q", st.LastError, tc.want)
			}
			cancel()
			if err := result(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			if c.len() != 0 {
				t.Errorf("got %d frames from a camera that refused us", c.len())
			}
			for _, secret := range []string{testPass, "wrong-Pass-42"} {
				if strings.Contains(st.LastError, secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("a password leaked:\nstats: %q\nlogs: %s", st.LastError, logs.String())
				}
			}
			if !strings.Contains(logs.String(), "retrying") {
				t.Errorf("logs do not report the retry: %s", logs.String())
			}
		})
	}
}

func TestRTSPUnsupportedCodec(t *testing.T) {
	cam := &testCamera{t: t, fx: loadFixture(t), auth: "digest", user: "admin", pass: testPass,
		sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\n" +
			"m=video 0 RTP/AVP 96 97\r\na=rtpmap:96 H263-1998/90000\r\na=rtpmap:97 MP4V-ES/90000\r\na=control:trackID=1\r\n" +
			"m=audio 0 RTP/AVP 0\r\na=control:trackID=2\r\n"}
	src, err := Open(cam.url("admin", testPass), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, result := run(t, src, &collector{})
	err = result()
	if !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("Run = %v, want ErrUnsupportedCodec", err)
	}
	for _, want := range []string{"H263-1998/MP4V-ES", "Custos records H.264"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), testPass) {
		t.Errorf("error %q leaks the password", err)
	}
	if st := src.Stats(); st.State != StateFailed || !strings.Contains(st.LastError, "H263") {
		t.Errorf("Stats = %+v, want failed with the codec error", st)
	}
}

func TestRTSPSilentCameraReconnects(t *testing.T) {
	fx := loadFixture(t)
	cam := &testCamera{t: t, fx: fx, silentAfter: 30}
	src, err := Open(cam.url("", ""), Options{
		ReadTimeout: 300 * time.Millisecond,
		Backoff:     Backoff{Initial: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	run(t, src, c)
	waitFor(t, 10*time.Second, "frames after a reconnect", func() bool { return c.len() >= 90 && cam.conns.Load() >= 2 })
	st := src.Stats()
	if st.Reconnects < 1 || !strings.Contains(st.LastError, ErrTimeout.Error()) {
		t.Errorf("Stats = %+v, want a reconnect after a timeout", st)
	}
	frames, _ := c.snapshot()
	// 30 frames from the first connection, then the clip from the start.
	checkStream(t, fx, frames[:30], [2]int{})
	checkStream(t, fx, frames[30:], [2]int{})
}

// A camera that keeps sending fragments of a frame that never ends is not
// "playing, 0 fps": it is an error, and the source reconnects.
func TestRTSPEndlessFragmentIsAnError(t *testing.T) {
	fx := loadFixture(t)
	cam := &testCamera{t: t, fx: fx, endlessFU: 30, frameEvery: 10 * time.Millisecond}
	src, err := Open(cam.url("", ""), Options{
		ReadTimeout: 300 * time.Millisecond,
		Backoff:     Backoff{Initial: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	run(t, src, c)
	waitFor(t, 20*time.Second, "a reconnect after the endless fragment", func() bool { return cam.conns.Load() >= 2 && c.len() > 30 })
	if st := src.Stats(); st.Reconnects < 1 || !strings.Contains(st.LastError, "no whole frame") {
		t.Errorf("Stats = %+v, want a reconnect naming frames that never complete", st)
	}
}

func TestRTSPLossDropsUntilKeyframe(t *testing.T) {
	fx := loadFixture(t)
	for _, tc := range []struct {
		name string
		drop func(frame, k, n int) bool
		gap  [2]int // fixture frames [from, to) that must not be emitted
	}{
		{"first packet of P frame 30", func(f, k, n int) bool { return f == 30 && k == 0 }, [2]int{30, 50}},
		{"middle FU-A of IDR 50", func(f, k, n int) bool { return f == 50 && k == n/2 }, [2]int{50, 75}},
		{"marker packet of frame 10", func(f, k, n int) bool { return f == 10 && k == n-1 }, [2]int{10, 25}},
		{"SPS/PPS STAP-A of IDR 75", func(f, k, n int) bool { return f == 75 && k == 0 }, [2]int{75, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 10 ms a frame: 4x real time, so 145 frames stay within the
			// 5 s skew after which timestamps re-anchor.
			cam := &testCamera{t: t, fx: fx, drop: tc.drop, frameEvery: 10 * time.Millisecond}
			src, err := Open(cam.url("", ""), Options{})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			run(t, src, c)
			want := 120 - (tc.gap[1] - tc.gap[0])
			waitFor(t, 10*time.Second, "frames past the loss", func() bool { return c.len() >= want })
			frames, _ := c.snapshot()
			checkStream(t, fx, frames[:want], tc.gap)
			if st := src.Stats(); st.Reconnects != 0 {
				t.Errorf("loss caused a reconnect: %+v", st)
			}
		})
	}
}
