package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// TestRecordDecryptsAndPlays records the whole clip, then does what a
// release does: two custodians open their shares of each epoch, the key
// is combined and every segment decrypted. The concatenation must be the
// recording: every frame, in order, decodable by ffprobe without an
// error. Recovery + dc-b must open it too.
func TestRecordDecryptsAndPlays(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.record(clip.Frames)
	dcA, dcB, recovery := testKeys(t)

	segs := decryptAll(t, r.st, dcA, dcB)
	if got, want := len(segs), clip.Frames/clip.GOP; got != want {
		t.Fatalf("%d segments stored, want %d (one per GOP with a 1 s target)", got, want)
	}
	if got := storedFrames(t, segs); got != clip.Frames {
		t.Fatalf("%d frames stored, want the %d recorded", got, clip.Frames)
	}
	var plain []byte
	for i, s := range segs {
		if i > 0 && s.meta.Start.Before(segs[i-1].meta.End) {
			t.Errorf("segment %d starts at %s, before segment %d ends at %s", i, s.meta.Start, i-1, segs[i-1].meta.End)
		}
		plain = append(plain, s.plain...)
	}
	other := decryptAll(t, r.st, recovery, dcB)
	for i := range other {
		if !bytes.Equal(other[i].plain, segs[i].plain) {
			t.Fatalf("segment %d: recovery+dc-b decrypt other bytes than dc-a+dc-b", i)
		}
	}

	st := r.rec.Stats()
	if st.State != StateStopped || st.SegmentsWritten != uint64(len(segs)) || st.SegmentsLost != 0 || st.Segments != len(segs) ||
		st.Frames != clip.Frames || st.FramesDropped != 0 || st.EpochsMade == 0 || st.Epochs == 0 || st.DiskFull ||
		!st.LastSegment.Equal(segs[len(segs)-1].meta.End) || st.Oldest.IsZero() || st.Bytes == 0 || st.LastError != "" ||
		st.Codec != "h264" || st.Width != clip.Width || st.Height != clip.Height {
		t.Errorf("Stats after recording the clip: %+v", st)
	}
	js, err := json.Marshal(st)
	if err != nil || !bytes.Contains(js, []byte(`"segments_lost":0`)) || !bytes.Contains(js, []byte(`"state":"stopped"`)) {
		t.Errorf("Stats as JSON: %s, %v", js, err)
	}
	if r.events.count(EventStarted) != 1 || r.events.count(EventStopped) != 1 {
		t.Errorf("events: %+v, want one start and one stop", r.events.list)
	}

	ffprobeFrames(t, plain, clip.Frames)
}

// ffprobeFrames checks with ffprobe that ts decodes with exactly frames
// frames and not a single error.
func ffprobeFrames(t *testing.T, plain []byte, frames int) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed")
	}
	// The test writes this plaintext deliberately, outside any store.
	path := filepath.Join(t.TempDir(), "decrypted.ts")
	if err := os.WriteFile(path, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v\n%s", err, stderr.String())
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	if got["codec_name"] != "h264" || got["width"] != strconv.Itoa(clip.Width) || got["height"] != strconv.Itoa(clip.Height) ||
		got["nb_read_frames"] != strconv.Itoa(frames) {
		t.Fatalf("ffprobe says %v, want h264 %dx%d with %d frames", got, clip.Width, clip.Height, frames)
	}
}

// TestCleanStopFlushes: stopping stores the segment being cut, so every
// frame recorded up to the stop is stored.
func TestCleanStopFlushes(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := newRig(t, rigOpts{base: base})
	const n = 2*clip.GOP + 10 // two whole segments and 10 frames of a third
	r.record(n)
	segs := decryptDC(t, r.st)
	if got := storedFrames(t, segs); got != n {
		t.Fatalf("%d frames stored after a clean stop, want the %d recorded", got, n)
	}
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	last := segs[2].meta
	if want := base.Add(2 * clip.GOP * frameInterval); !last.Start.Equal(want) {
		t.Errorf("last segment starts at %s, want %s", last.Start, want)
	}
	if want := base.Add(n * frameInterval); !last.End.Equal(want) {
		t.Errorf("last segment ends at %s, want %s", last.End, want)
	}
}

// dcKeys returns dc-a and dc-b, the custodians a release usually asks.
func dcKeys(t testing.TB) (*keys.CustodianKey, *keys.CustodianKey) {
	a, b, _ := testKeys(t)
	return a, b
}

// TestQueueFullDropsNewest holds the writer on its first segment: the
// next QueueSegments segments wait in the queue, the one after that is
// dropped (counted, reported), and the source never waits. Once the disk
// is back everything queued is stored, in order.
func TestQueueFullDropsNewest(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := newRig(t, rigOpts{base: base, config: func(c *RecorderConfig) { c.QueueSegments = 2 }})
	entered, unblock := make(chan struct{}), make(chan struct{})
	var unblocked sync.Once
	release := func() { unblocked.Do(func() { close(unblock) }) }
	t.Cleanup(release) // registered after the rig's: runs before its stop
	var calls atomic.Int32
	r.rec.hookBeforePut = func(store.SegmentMeta) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-unblock
		}
		return nil
	}
	r.start()
	r.src.release(clip.GOP + 1) // segment 0 closes and reaches the writer, which hangs
	<-entered
	r.src.release(2 * clip.GOP) // segments 1 and 2 fill the queue
	waitFor(t, "two queued segments", func() bool { return r.rec.Stats().Queued == 2 })
	r.src.release(clip.GOP) // segment 3 finds the queue full
	waitFor(t, "a lost segment", func() bool { return r.rec.Stats().SegmentsLost == 1 })
	if st := r.rec.Stats(); !strings.Contains(st.LastError, "dropped") || st.SegmentsWritten != 0 {
		t.Errorf("Stats with a full queue: %+v", st)
	}
	if got := r.events.count(EventSegmentLost); got != 1 {
		t.Errorf("%d segment-lost events, want 1", got)
	}
	release()
	waitFor(t, "frames delivered", func() bool { return r.src.emitted.Load() == 4*clip.GOP+1 })
	if err := r.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}

	segs := decryptDC(t, r.st)
	var starts []time.Duration
	for _, s := range segs {
		starts = append(starts, s.meta.Start.Sub(base)/frameInterval)
	}
	// Frames 75–99 (segment 3) were dropped; frame 100 was flushed at the stop.
	want := []time.Duration{0, clip.GOP, 2 * clip.GOP, 4 * clip.GOP}
	if !slices.Equal(starts, want) {
		t.Fatalf("stored segments start at frames %v, want %v", starts, want)
	}
	if got := storedFrames(t, segs); got != 3*clip.GOP+1 {
		t.Errorf("%d frames stored, want %d", got, 3*clip.GOP+1)
	}
}

// TestRestartReusesStoredEpoch: a recorder restarted inside an epoch
// finds that epoch's record in the store (its private key long gone) and
// encrypts to it, rather than making a second record the store would
// refuse and losing footage until the epoch ends.
func TestRestartReusesStoredEpoch(t *testing.T) {
	dir := t.TempDir()
	base := keys.EpochStart(time.Now(), keys.DefaultEpochLength).Add(time.Minute)
	first := newRig(t, rigOpts{storeDir: dir, base: base})
	first.record(2*clip.GOP + 1)
	first.st.Close()

	second := newRig(t, rigOpts{storeDir: dir, base: base.Add(10 * time.Second)})
	second.record(clip.GOP + 1)
	if st := second.rec.Stats(); st.SegmentsLost != 0 || st.SegmentsWritten != 2 || st.Epochs != 1 {
		t.Fatalf("Stats after the restart: %+v", st)
	}
	segs := decryptDC(t, second.st)
	if len(segs) != 5 {
		t.Fatalf("%d segments, want 3 from the first run and 2 from the second", len(segs))
	}
	for _, s := range segs {
		if s.rec.Fingerprint != segs[0].rec.Fingerprint {
			t.Errorf("segment %s under epoch key %s, want the stored %s", s.meta.Start, s.rec.Fingerprint, segs[0].rec.Fingerprint)
		}
	}
}

// TestNewRecorderRefuses checks each configuration error and its message.
func TestNewRecorderRefuses(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs := custodians(t)
	good := func() RecorderConfig {
		return RecorderConfig{Camera: testCamera, Source: newTestSource(t, time.Time{}), Store: st, Custodians: cs, Signer: testSigner(t)}
	}
	for _, tc := range []struct {
		name string
		edit func(*RecorderConfig)
		want string
	}{
		{"no camera", func(c *RecorderConfig) { c.Camera = "" }, "site/name"},
		{"camera without site", func(c *RecorderConfig) { c.Camera = "entrance" }, "site/name"},
		{"camera too deep", func(c *RecorderConfig) { c.Camera = "a/b/c" }, "site/name"},
		{"camera with space", func(c *RecorderConfig) { c.Camera = "praha 1/entrance" }, "letters, digits"},
		{"no source", func(c *RecorderConfig) { c.Source = nil }, "no Source"},
		{"no store", func(c *RecorderConfig) { c.Store = nil }, "no Store"},
		{"one custodian", func(c *RecorderConfig) { c.Custodians = cs[:1] }, "at least 2"},
		{"empty custodian", func(c *RecorderConfig) { c.Custodians = []keys.Custodian{cs[0], {}} }, "custodian 1 is empty"},
		{"same custodian twice", func(c *RecorderConfig) { c.Custodians = []keys.Custodian{cs[0], cs[1], cs[0]} }, "twice"},
		{"no signer", func(c *RecorderConfig) { c.Signer = nil }, "no Signer"},
		{"epoch not whole seconds", func(c *RecorderConfig) { c.EpochLength = 1500 * time.Millisecond }, "whole seconds"},
		{"negative epoch", func(c *RecorderConfig) { c.EpochLength = -time.Minute }, "whole seconds"},
		{"negative queue", func(c *RecorderConfig) { c.QueueSegments = -1 }, "queue"},
		{"huge queue", func(c *RecorderConfig) { c.QueueSegments = MaxQueueSegments + 1 }, "queue"},
		{"segments too long", func(c *RecorderConfig) { c.Segment = ts.Config{Target: 30 * time.Minute} }, "MaxDuration"},
		{"segments too big", func(c *RecorderConfig) { c.Segment = ts.Config{MaxBytes: store.MaxSegmentBytes} }, "MaxBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			r, err := NewRecorder(cfg)
			if err == nil || r != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewRecorder: %v, want an error saying %q", err, tc.want)
			}
		})
	}

	r, err := NewRecorder(good())
	if err != nil {
		t.Fatalf("NewRecorder with a good config: %v", err)
	}
	if r.cfg.EpochLength != keys.DefaultEpochLength || r.cfg.QueueSegments != DefaultQueueSegments {
		t.Errorf("defaults: epoch %v, queue %d", r.cfg.EpochLength, r.cfg.QueueSegments)
	}
	if st := r.Stats(); st.State != StateIdle || st.QueueCap != DefaultQueueSegments {
		t.Errorf("Stats before Run: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with an ended context: %v", err)
	}
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run: %v, want an error", err)
	}
}

// TestPlaintextWiped: the recorder zeroes its plaintext as soon as it is
// done with it: each frame once the segmenter copied it, each segment once
// it is encrypted or lost.
func TestPlaintextWiped(t *testing.T) {
	r := newRig(t, rigOpts{base: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	ek, err := keys.NewEpochKeys(keys.EpochKeysConfig{Camera: testCamera, Custodians: r.rec.cfg.Custodians})
	if err != nil {
		t.Fatal(err)
	}
	defer ek.Close()
	queue := make(chan *ts.Segment, 1)
	seg := ts.NewSegmenter(ts.Config{Target: time.Second})
	var frames [][]byte
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 2*clip.GOP + 1 // two segments: one queued, one lost to the full queue
	r.src.release(n)
	err = r.src.Run(ctx, func(f h264.Frame) error {
		frames = append(frames, f.Data)
		r.rec.push(seg, f, queue)
		if len(frames) == n {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(frames) != n {
		t.Fatalf("source: %v after %d frames", err, len(frames))
	}
	for i, f := range frames {
		if len(f) == 0 || !allZero(f) {
			t.Fatalf("frame %d not wiped after Push", i)
		}
	}
	queued := <-queue
	plain := queued.Data
	newWriter(r.rec, ek).write(queued)
	if st := r.rec.Stats(); st.SegmentsWritten != 1 || st.SegmentsLost != 1 {
		t.Fatalf("Stats: %+v; want one segment written and one lost", st)
	}
	if len(plain) == 0 || !allZero(plain) {
		t.Error("segment not wiped after it was encrypted and stored")
	}
	lost := &ts.Segment{Data: []byte("plaintext")}
	r.rec.lose(lost, errors.New("test"))
	if !allZero(lost.Data) {
		t.Error("lost segment not wiped")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// failingSource delivers the frames its inner source releases, then fails
// for good, as a camera without H.264 would.
type failingSource struct {
	*testSource
	after int
}

func (s failingSource) Run(ctx context.Context, emit func(h264.Frame) error) error {
	n := 0
	err := s.testSource.Run(ctx, func(f h264.Frame) error {
		if n == s.after {
			return source.ErrUnsupportedCodec
		}
		n++
		return emit(f)
	})
	return fmt.Errorf("source: %w", err)
}

// TestSourceFailure: a source that fails for good ends Run with its error
// (the camera named), after the footage before the failure is stored.
func TestSourceFailure(t *testing.T) {
	var fs failingSource
	r := newRig(t, rigOpts{config: func(c *RecorderConfig) {
		fs = failingSource{testSource: c.Source.(*testSource), after: clip.GOP + 5}
		c.Source = fs
	}})
	r.src.release(clip.GOP + 6)
	err := r.rec.Run(context.Background())
	if !errors.Is(err, source.ErrUnsupportedCodec) || !strings.Contains(err.Error(), testCamera) {
		t.Fatalf("Run: %v, want ErrUnsupportedCodec naming the camera", err)
	}
	if got := storedFrames(t, decryptDC(t, r.st)); got != clip.GOP+5 {
		t.Errorf("%d frames stored, want the %d delivered before the failure", got, clip.GOP+5)
	}
	if st := r.rec.Stats(); st.State != StateFailed || !strings.Contains(st.LastError, "unsupported codec") {
		t.Errorf("Stats: %+v", st)
	}
	if r.events.count(EventStopped) != 1 {
		t.Errorf("events: %+v", r.events.list)
	}
}
