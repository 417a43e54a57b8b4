package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	mediasource "github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// runCameraAdd puts a camera into the policy. Credentials in --source are
// split off first and handed to the store in --dir, which alone keeps them;
// the policy gets the URL without them. With --onvif the camera is asked
// for its RTSP URL first (camera_onvif.go).
func runCameraAdd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("camera add", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	site := fs.String("site", "", "the camera's site `S`")
	name := fs.String("name", "", "the camera's name `N` within its site")
	source := fs.String("source", "", "the camera's `URL`: rtsp://[USER:PASS@]HOST[:PORT]/PATH, rtsps://… (TLS, port 322) or synthetic:[?fps=N&scale=K&codec=h265]")
	onvifURL := fs.String("onvif", "", "instead of --source, ask the camera's ONVIF device service at `URL` (http://HOST/onvif/device_service) for its RTSP URL")
	user := fs.String("user", "", "with --onvif, the camera's user `U` (the password is read from CUSTOS_CAMERA_PASSWORD or asked for)")
	rtspUser := fs.String("rtsp-user", "", "with --onvif, a separate RTSP user `U` for recording (its password from CUSTOS_RTSP_PASSWORD or asked for); default: the ONVIF login")
	profile := fs.String("profile", "", "with --onvif, the media profile `P` by name or token (default: the H.264/H.265 one of the highest resolution)")
	transport := fs.String("transport", "", "how RTP travels from the camera: `tcp` (interleaved, the default), udp, or auto (UDP, falling back to TCP)")
	caFile := fs.String("ca", "", "rtsps: verify the camera's certificate against the CA certificates in PEM `FILE` instead of pinning it")
	pin := fs.String("pin", "", "rtsps: the camera's certificate fingerprint `sha256:HEX` (as `custos cameras --json` shows it); without it, and without --ca, the first one seen is pinned")
	purpose := fs.String("purpose", "", "why it records, as `TEXT` (GDPR art. 5(1)(b))")
	basis := fs.String("basis", "legitimate interest (GDPR art. 6(1)(f))", "the legal basis, as `TEXT`")
	retention := fs.Duration("retention", policy.DefaultRetention, "how long recordings are kept, a duration `D`")
	justification := fs.String("justification", "", "why a retention above 72h is needed, as `TEXT` (required then)")
	tags := fs.String("tags", "", "comma-separated tags `A,B` for grants such as tag:tills")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *site == "" || *name == "" || (*source == "") == (*onvifURL == "") || *purpose == "" {
		return usageError{errors.New("--site, --name, --purpose and one of --source or --onvif are required")}
	}
	if *onvifURL == "" && (*user != "" || *profile != "" || *rtspUser != "") {
		return usageError{errors.New("--user, --rtsp-user and --profile go with --onvif (with --source, the user is in the URL)")}
	}
	var (
		clean  string
		secret recording.CameraSecret
		err    error
	)
	if *onvifURL != "" {
		clean, secret, err = onvifSource(ctx, *onvifURL, *user, *profile, stdout)
		if err != nil {
			return err
		}
		if *rtspUser != "" {
			p, err := readSecret("CUSTOS_RTSP_PASSWORD", "RTSP password of "+*rtspUser)
			if err != nil {
				return err
			}
			secret = recording.CameraSecret{User: *rtspUser, Password: p}
		}
	} else if clean, secret, err = recording.SplitCredentials(*source); err != nil {
		return usageError{fmt.Errorf("--source: %w", err)}
	}
	rtsps := strings.HasPrefix(strings.ToLower(clean), "rtsps:")
	if t, err := mediasource.ParseTransport(*transport); err != nil {
		return usageError{fmt.Errorf("--transport: %w", err)}
	} else if *transport != "" {
		secret.Transport = string(t)
	}
	if (*caFile != "" || *pin != "") && !rtsps {
		return usageError{errors.New("--ca and --pin are for rtsps:// sources")}
	}
	if *caFile != "" && *pin != "" {
		return usageError{errors.New("give --ca or --pin, not both")}
	}
	if *pin != "" && !mediasource.ValidFingerprint(*pin) {
		return usageError{errors.New("--pin: want sha256: and 64 lower-case hex digits")}
	}
	secret.Pin = *pin
	if *caFile != "" {
		b, err := readSmallFile(*caFile, 64<<10)
		if err != nil {
			return usageError{fmt.Errorf("--ca: %w", err)}
		}
		secret.CA = string(b)
	}
	cam := &policy.Camera{Site: *site, Name: *name, Source: clean, Purpose: *purpose, LegalBasis: *basis,
		Retention: *retention, Justification: *justification}
	if *tags != "" {
		cam.Tags = strings.Split(*tags, ",")
	}
	// An rtsps camera always gets its settings set again: that clears a
	// pin, so camera add is also how an operator re-pins.
	if secret.User != "" || secret.Transport != "" || rtsps {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := node.SetCameraSecretVia(sctx, *dir, cam.Key(), secret)
		cancel()
		if err != nil {
			return fmt.Errorf("camera credentials: %w", err)
		}
		fmt.Fprintf(stdout, "credentials and settings for %s kept on the store in %s only (not in the policy)\n", cam.Key(), *dir)
		if rtsps && secret.Pin == "" && secret.CA == "" {
			fmt.Fprintf(stdout, "%s: its certificate will be pinned on first connection; see custos cameras --json (cert_fingerprint)\n", cam.Key())
		}
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindAddCamera, Camera: cam}, stdout)
}

func runCameraRemove(ctx context.Context, args []string, stdout io.Writer) error {
	pos, args := positional(args, 1)
	fs := flag.NewFlagSet("camera remove", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if pos[0] == "" {
		return usageError{errors.New("which camera? give SITE/NAME before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindRemoveCamera, Name: pos[0]}, stdout)
}

func runCameraList(ctx context.Context, args []string, stdout io.Writer) error {
	return listPolicy(ctx, "camera list", args, stdout, func(st *policy.State) map[string]*policy.Camera { return st.Cameras },
		"CAMERA\tSOURCE\tRETENTION\tPURPOSE\tTAGS", func(_ *policy.State, c *policy.Camera) string {
			return fmt.Sprintf("%s\t%s\t%v\t%s\t%s", c.Key(), dash(c.Source), c.Retention, c.Purpose, dash(strings.Join(c.Tags, ",")))
		})
}

// runCameras shows what a store records: per camera its source, frame rate,
// bitrate, segments and bytes stored, oldest and newest footage, errors.
func runCameras(ctx context.Context, args []string, stdout io.Writer) error {
	dir, asJSON, err := dirFlags("cameras", args)
	if err != nil {
		return err
	}
	st, err := fetchStatus(ctx, dir)
	if err != nil {
		return err
	}
	if st.Recording == nil {
		return fmt.Errorf("%s (%s) is not a store: it records no cameras", st.Name, dir)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st.Recording)
	}
	writeCameras(stdout, st.Recording)
	return nil
}

func writeCameras(w io.Writer, r *recording.Status) {
	if r.Waiting != "" {
		fmt.Fprintf(w, "recording  not recording: %s\n", r.Waiting)
	}
	if r.Disk.DiskFull {
		fmt.Fprintf(w, "ALARM      disk full since %s: %s\n", stamp(r.Disk.Since), r.Disk.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CAMERA\tSTATE\tSOURCE\tVIDEO\tTRANSPORT\tLOSS\tFPS\tKBIT/S\tLAST SEGMENT\tSEGMENTS\tMB\tOLDEST\tERRORS\n")
	var certs []string
	for _, c := range r.Cameras {
		errs := c.LastError
		if errs == "" {
			errs = c.SourceError
		}
		if c.SegmentsLost > 0 {
			errs = fmt.Sprintf("%d segments lost; %s", c.SegmentsLost, errs)
		}
		state := string(c.State)
		if c.DiskFull {
			// The camera still plays, but nothing of it is kept: say so
			// where the operator looks, not only in the alarm line.
			state = "NOT STORING (disk full)"
		}
		video := c.Codec
		if c.Width > 0 {
			video = fmt.Sprintf("%s %dx%d", c.Codec, c.Width, c.Height)
		}
		transport := c.Transport
		if c.FellBack {
			transport += " (fell back from udp)"
		}
		loss := "-"
		if c.Transport == "udp" || c.PacketsLost > 0 {
			loss = fmt.Sprintf("%d lost, %d reordered", c.PacketsLost, c.PacketsReordered)
			if c.PacketsForeign > 0 {
				loss += fmt.Sprintf(", %d foreign", c.PacketsForeign)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t%s\t%d\t%.1f\t%s\t%s\n", c.Camera, state, c.SourceState, dash(video), dash(transport), loss,
			c.FPS, c.BitrateBPS/1000, stamp(c.LastSegment), c.Segments, float64(c.Bytes)/1e6, stamp(c.Oldest), dash(errs))
		if c.CertFingerprint != "" {
			certs = append(certs, fmt.Sprintf("certificate  %s  %s", c.Camera, c.CertFingerprint))
		}
	}
	tw.Flush()
	// Fingerprints are long: one line each under the table, as
	// `custos camera add --pin` takes them.
	for _, l := range certs {
		fmt.Fprintln(w, l)
	}
}

// readSmallFile reads a file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
