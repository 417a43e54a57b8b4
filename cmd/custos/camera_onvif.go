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

	"golang.org/x/term"

	"github.com/custos-cctv/custos/media/onvif"
	"github.com/custos-cctv/custos/node/recording"
)

// runCameraDiscover lists the ONVIF cameras that answer a WS-Discovery
// probe. The probe leaves from the machine the command runs on, so it must
// be the store's: the store is on the cameras' network, and the one that
// records them. A running store in --dir is how the command knows.
func runCameraDiscover(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("camera discover", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the store running on this machine")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to collect replies, a duration `D`")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
	}
	if *timeout <= 0 || *timeout > time.Minute {
		return usageError{errors.New("--timeout must be above 0 and at most 1m")}
	}
	st, err := fetchStatus(ctx, *dir)
	if err != nil {
		return fmt.Errorf("%w (discovery runs on a store, from its network: --dir is the data directory of the store running on this machine)", err)
	}
	if st.Recording == nil {
		return fmt.Errorf("%s (%s) is not a store: discovery runs on the store of the cameras' site, from its network", st.Name, *dir)
	}
	res, err := onvif.Discover(ctx, *timeout)
	if err != nil {
		return err
	}
	for _, why := range res.Ignored {
		fmt.Fprintf(os.Stderr, "ignored a reply from %s\n", why)
	}
	if *asJSON {
		if res.Devices == nil {
			res.Devices = []onvif.Device{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if len(res.Devices) == 0 {
		fmt.Fprintf(stdout, "no ONVIF camera answered within %v (is ONVIF, often called \"discovery\", enabled on the cameras, and are they on this store's network?)\n", *timeout)
		return nil
	}
	writeDiscovered(stdout, res.Devices)
	return nil
}

func writeDiscovered(w io.Writer, devs []onvif.Device) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ADDRESS\tNAME\tHARDWARE\tXADDR\tENDPOINT\n")
	for _, d := range devs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Address, dash(d.Name), dash(d.Hardware), strings.Join(d.XAddrs, " "), d.Endpoint)
	}
	tw.Flush()
}

// onvifSource asks the camera at xaddr for profile's RTSP URL and returns
// it without credentials, and the login the store is to keep: the URL's own
// if it has one, else the ONVIF login.
func onvifSource(ctx context.Context, xaddr, user, profile string, stdout io.Writer) (string, recording.CameraSecret, error) {
	var password string
	if user != "" {
		p, err := readSecret("CUSTOS_CAMERA_PASSWORD", "Password of "+user+" on the camera")
		if err != nil {
			return "", recording.CameraSecret{}, err
		}
		password = p
	}
	c, err := onvif.NewClient(xaddr, user, password)
	if err != nil {
		return "", recording.CameraSecret{}, usageError{fmt.Errorf("--onvif: %w", err)}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := c.Resolve(rctx, profile)
	if err != nil {
		return "", recording.CameraSecret{}, err
	}
	clean, secret, err := recording.SplitCredentials(s.URI)
	if err != nil {
		return "", recording.CameraSecret{}, fmt.Errorf("the camera's stream URL: %w", err)
	}
	if secret.User == "" {
		secret = recording.CameraSecret{User: user, Password: password}
	}
	dev := strings.TrimSpace(s.Device.Manufacturer + " " + s.Device.Model)
	if dev == "" {
		dev = "the camera"
	}
	fmt.Fprintf(stdout, "ONVIF: %s, profile %s: %s\n", dev, s.Profile, clean)
	return clean, secret, nil
}

// readSecret takes the environment variable env, or asks on the terminal
// with prompt. Never a flag: flags show in ps and shell history. (Standard
// input is the admin key's passphrase's when it is no terminal.)
func readSecret(env, prompt string) (string, error) {
	if p, ok := os.LookupEnv(env); ok {
		os.Unsetenv(env)
		return p, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", fmt.Errorf("no %s: set %s or run on a terminal", strings.ToLower(prompt[:1])+prompt[1:], env)
	}
	fmt.Fprintf(os.Stderr, "%s: ", prompt)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	return string(p), nil
}
