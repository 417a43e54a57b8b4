package media

import (
	"context"
	"testing"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// BenchmarkRecordPipeline runs the recording path inline, one frame per
// iteration: unpaced synthetic frames → 4 s segments → encryption to the
// epoch key → durable Put (fsync and all). The queue is left out: it only
// moves the same work to another goroutine. frames/s over 25 is how many
// cameras of the clip's bitrate one core could record.
func BenchmarkRecordPipeline(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	src, err := source.Open("synthetic:?pace=none", source.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rec, err := NewRecorder(RecorderConfig{Camera: testCamera, Source: src, Store: st, Custodians: custodians(b), Signer: testSigner(b)})
	if err != nil {
		b.Fatal(err)
	}
	ek, err := keys.NewEpochKeys(keys.EpochKeysConfig{Camera: testCamera, Custodians: rec.cfg.Custodians})
	if err != nil {
		b.Fatal(err)
	}
	defer ek.Close()
	w := newWriter(rec, ek)
	seg := ts.NewSegmenter(ts.Config{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var frames, size int
	b.ResetTimer()
	err = src.Run(ctx, func(f h264.Frame) error {
		size += len(f.Data)
		if s, err := seg.Push(f); err != nil {
			return err
		} else if s != nil {
			w.write(s)
		}
		if frames++; frames == b.N {
			cancel()
		}
		return nil
	})
	if s := seg.Flush(); s != nil {
		w.write(s)
	}
	b.StopTimer()
	if err != context.Canceled {
		b.Fatal(err)
	}
	if st := rec.Stats(); st.SegmentsLost != 0 {
		b.Fatalf("segments lost: %s", st.LastError)
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(frames)/sec, "frames/s")
	b.ReportMetric(float64(size)/1e6/sec, "MB/s")
	b.ReportMetric(float64(frames)/sec/clip.FPS, "cameras")
}
