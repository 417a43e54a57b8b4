package release

// The export's output: the one plaintext file, built unnamed and linked
// in whole, and remuxed to MP4 on request.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
)

// output is the export file being written: a temporary file beside the
// destination, hashed as it is written.
type output struct {
	f      *os.File
	h      hash.Hash
	n      int64
	frames int
	mux    ts.Muxer
	buf    []byte
}

func (o *output) writeFrame(f tsFrame) error {
	var err error
	o.buf, err = o.mux.AppendFrame(o.buf[:0], h264.Frame{Time: timeOfTicks(f.Ticks), Key: f.Key, Data: f.Data, Codec: f.Codec})
	if err != nil {
		return err
	}
	o.h.Write(o.buf)
	if _, err := o.f.Write(o.buf); err != nil {
		return err
	}
	clear(o.buf)
	o.n += int64(len(o.buf))
	o.frames++
	return nil
}

// write fetches, decrypts and trims every camera's segments into the
// output file and returns the manifest (without the exporter). The file is
// built unnamed (O_TMPFILE) and linked in at the path asked only when it is
// whole: a crash leaves no plaintext behind under any name, and a file that
// appeared at that path meanwhile is never overwritten (link, not rename).
func (x *exporter) write(ctx context.Context, req ExportRequest) (*keys.Manifest, error) {
	f, err := unnamedFile(filepath.Dir(req.Out))
	if err != nil {
		return nil, fmt.Errorf("export file: %w", err)
	}
	defer f.Close()
	o := &output{f: f, h: sha256.New()}
	m := x.manifest(req)
	for _, cam := range x.r.Cameras {
		segs, err := x.camera(ctx, cam, o)
		if err != nil {
			return nil, err
		}
		m.Segments = append(m.Segments, segs...)
	}
	m.Gaps = x.gaps
	if o.frames == 0 {
		return nil, fmt.Errorf("no decodable footage in %s…%s (no keyframe recorded in the range?)", stamp(x.r.From), stamp(x.r.To))
	}
	sum, size := hex.EncodeToString(o.h.Sum(nil)), o.n
	if isMP4(req.Out) {
		if sum, size, err = remuxMP4(ctx, f, req.Out); err != nil {
			return nil, err
		}
	} else if err := publish(f, req.Out); err != nil {
		return nil, err
	}
	m.Output = keys.ManifestOutput{Name: filepath.Base(req.Out), Bytes: size, SHA256: sum, Frames: o.frames}
	return m, nil
}

// unnamedFile opens a new file in dir that has no name (O_TMPFILE, 0600):
// it disappears with the process unless publish links it in.
func unnamedFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("an unnamed file in %s (O_TMPFILE, which the export needs so that no plaintext is left behind): %w", dir, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed export)")), nil
}

// publish syncs f and gives it the name dst, failing if dst exists.
func publish(f *os.File, dst string) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s appeared while the export ran; refusing to overwrite it", dst)
	}
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	return nil
}

func isMP4(path string) bool { return strings.EqualFold(filepath.Ext(path), ".mp4") }

// remuxMP4 copies the MPEG-TS export in src into an MP4 at dst with ffmpeg
// (no re-encoding: the same frames) and returns its SHA-256 and size. ffmpeg
// reads and writes unnamed files it is handed as descriptors, so neither
// the TS nor the MP4 has a name before the MP4 is whole.
func remuxMP4(ctx context.Context, src *os.File, dst string) (string, int64, error) {
	out, err := unnamedFile(filepath.Dir(dst))
	if err != nil {
		return "", 0, err
	}
	defer out.Close()
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	// -y: /dev/fd/4 exists (it is our unnamed file), so ffmpeg must write
	// to it rather than ask.
	cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "mpegts", "-i", "/dev/fd/3",
		"-c", "copy", "-movflags", "+faststart", "-f", "mp4", "/dev/fd/4")
	cmd.ExtraFiles = []*os.File{src, out}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("remux to mp4 with ffmpeg: %v: %s", err, strings.TrimSpace(string(b)))
	}
	fi, err := out.Stat()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(out, 0, fi.Size())); err != nil {
		return "", 0, fmt.Errorf("remux to mp4: %w", err)
	}
	if err := publish(out, dst); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), fi.Size(), nil
}
