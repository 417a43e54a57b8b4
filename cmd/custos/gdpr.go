package main

// The controller's documents, generated from the node's committed policy:
// gdpr ropa, dpia, notice, sign and check. policy/gdpr makes them; this
// file reads the policy, the operator's own measures, writes the file and
// remembers, per site, the policy version of the last DPIA made here (for
// gdpr check).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy/gdpr"
)

// gdprDoc is one document command: what it needs and how it is made.
type gdprDoc struct {
	name      string
	site      bool // needs --site
	noticeURL bool // needs --notice-url
	make      func(gdpr.Input) (*gdpr.Doc, error)
}

func runGDPRRoPA(ctx context.Context, args []string, stdout io.Writer) error {
	return runGDPRDoc(ctx, args, stdout, gdprDoc{name: "ropa", make: gdpr.RoPA})
}

func runGDPRDPIA(ctx context.Context, args []string, stdout io.Writer) error {
	return runGDPRDoc(ctx, args, stdout, gdprDoc{name: "dpia", site: true, make: gdpr.DPIA})
}

func runGDPRNotice(ctx context.Context, args []string, stdout io.Writer) error {
	return runGDPRDoc(ctx, args, stdout, gdprDoc{name: "notice", site: true, make: gdpr.Notice})
}

func runGDPRSign(ctx context.Context, args []string, stdout io.Writer) error {
	return runGDPRDoc(ctx, args, stdout, gdprDoc{name: "sign", site: true, noticeURL: true, make: gdpr.Sign})
}

func runGDPRDoc(ctx context.Context, args []string, stdout io.Writer, d gdprDoc) error {
	fs := flag.NewFlagSet("gdpr "+d.name, flag.ContinueOnError)
	dir := fs.String("dir", "", "the node's data directory `DIR`: the document is made from its committed policy")
	out := fs.String("out", "", "the `FILE` to write: .pdf or .html")
	lang := fs.String("lang", "en", "the language, `cs` or `en`")
	var site, noticeURL, measures *string
	if d.site {
		site = fs.String("site", "", "the `SITE` the document is about")
	}
	if d.noticeURL {
		noticeURL = fs.String("notice-url", "", "the https `URL` where the full notice is published: the sign's QR code points there")
	}
	if d.name == "ropa" || d.name == "dpia" {
		measures = fs.String("measures", "", "a text `FILE` of the operator's own technical and organisational measures, one per line, shown after those Custos enforces")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "" || *out == "":
		return usageError{errors.New("--dir and --out are required")}
	case site != nil && *site == "":
		return usageError{errors.New("--site is required")}
	case noticeURL != nil && *noticeURL == "":
		return usageError{errors.New("--notice-url is required: the sign's QR code points to the full notice")}
	case !slices.Contains(gdpr.Languages, *lang):
		return usageError{fmt.Errorf("--lang %q: want %s", *lang, strings.Join(gdpr.Languages, " or "))}
	}
	ext := strings.ToLower(filepath.Ext(*out))
	if ext != ".pdf" && ext != ".html" {
		return usageError{fmt.Errorf("--out %s: want a .pdf or .html file", *out)}
	}
	in, err := gdprInput(ctx, *dir)
	if err != nil {
		return err
	}
	in.Lang = *lang
	if site != nil {
		in.Site = *site
	}
	if noticeURL != nil {
		in.NoticeURL = *noticeURL
	}
	if measures != nil && *measures != "" {
		if in.Measures, err = readMeasures(*measures); err != nil {
			return err
		}
	}
	doc, err := d.make(in)
	if err != nil {
		return err
	}
	if err := writeDoc(*out, doc, ext); err != nil {
		return err
	}
	if d.name == "dpia" {
		if err := noteDPIA(*dir, in.Site, in.Index); err != nil {
			hint(ctx, "note: %v (gdpr check will not know of this DPIA)", err)
		}
	}
	fmt.Fprintf(stdout, "wrote %s: %s from policy version %d\n", *out, d.name, in.Index)
	return nil
}

// gdprInput reads the node's committed policy and its controller; the
// documents are refused until the controller is set.
func gdprInput(ctx context.Context, dir string) (gdpr.Input, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := node.FetchPolicy(cctx, dir)
	if err != nil {
		return gdpr.Input{}, err
	}
	if _, err := st.RequireController(); err != nil {
		return gdpr.Input{}, errDenied{err.Error()}
	}
	in := gdpr.FromPolicy(st)
	in.Now = time.Now()
	return in, nil
}

// readMeasures reads one measure per non-empty line.
func readMeasures(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--measures %s: %w", path, err)
	}
	return out, nil
}

// writeDoc renders doc to path through a temporary file, so a failed
// rendering leaves no half document (and an older one stays).
func writeDoc(path string, doc *gdpr.Doc, ext string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if ext == ".pdf" {
		err = doc.PDF(tmp)
	} else {
		err = doc.HTML(tmp)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// dpiaFile keeps, per site, the policy version of the last DPIA made
// through the node in dir.
func dpiaFile(dir string) string { return filepath.Join(dir, "gdpr", "dpia.json") }

func lastDPIAs(dir string) (map[string]uint64, error) {
	m := map[string]uint64{}
	b, err := os.ReadFile(dpiaFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", dpiaFile(dir), err)
	}
	return m, nil
}

func noteDPIA(dir, site string, index uint64) error {
	m, err := lastDPIAs(dir)
	if err != nil {
		return err
	}
	m[site] = index
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dpiaFile(dir)), 0o700); err != nil {
		return err
	}
	tmp := dpiaFile(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, dpiaFile(dir))
}

func runGDPRCheck(ctx context.Context, args []string, stdout io.Writer) error {
	st, l, err := listingPolicy(ctx, "gdpr check", "", args)
	if err != nil {
		return err
	}
	in := gdpr.FromPolicy(st)
	in.Now = time.Now()
	last, err := lastDPIAs(l.dir)
	if err != nil {
		return err
	}
	fs2 := gdpr.Check(in, last)
	if l.asJSON {
		if fs2 == nil {
			fs2 = []gdpr.Finding{}
		}
		return json.NewEncoder(stdout).Encode(fs2)
	}
	if len(fs2) == 0 {
		fmt.Fprintf(stdout, "nothing missing or stale at policy version %d\n", st.Applied)
		return nil
	}
	for _, f := range fs2 {
		fmt.Fprintln(stdout, printable(f.String()))
	}
	return fmt.Errorf("%d findings: the documents are incomplete or stale", len(fs2))
}
