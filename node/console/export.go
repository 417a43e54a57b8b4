package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// Exports: the session's own approved request is exported by the node to
// an MP4 in the console's exports directory (Config.Exports), with the
// signed manifest beside it as `custos export` writes it, and played in
// the page. The export order is signed with the session's key: the node
// serves the footage to the requester's key, not to a name.

// maxExport bounds one export's time, as a browser waits for it.
const maxExport = 10 * time.Minute

func (s *Server) exportsDir() string { return s.cfg.Exports }

func (s *Server) exportPath(id string) string { return filepath.Join(s.exportsDir(), id+".mp4") }

// exportedHere reports whether this console's exports directory holds id's
// export.
func (s *Server) exportedHere(id string) bool {
	if policy.ValidName(id) != nil {
		return false
	}
	_, err := os.Stat(s.exportPath(id))
	return err == nil
}

// selfName is the name of the node the console works through ("" when
// it cannot tell).
func (s *Server) selfName(ctx context.Context) string {
	st, err := node.FetchStatus(ctx, s.cfg.Dir)
	if err != nil {
		return ""
	}
	return st.Name
}

func (p *pages) export(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if err := policy.ValidName(id); err != nil {
		p.fail(w, http.StatusBadRequest, ss, fmt.Errorf("request %q: %w", id, err))
		return
	}
	if err := os.MkdirAll(p.s.exportsDir(), 0o700); err != nil {
		p.fail(w, http.StatusInternalServerError, ss, err)
		return
	}
	out := p.s.exportPath(id)
	ctx, cancel := context.WithTimeout(r.Context(), maxExport)
	defer cancel()
	fid, err := node.FederationIDOf(p.s.cfg.Dir)
	if err != nil {
		p.fail(w, http.StatusServiceUnavailable, ss, err)
		return
	}
	order := release.ExportRequest{Request: id, Out: out, Exporter: ss.user}
	if err := release.SignExport(ss.key, fid, &order); err != nil {
		p.fail(w, http.StatusInternalServerError, ss, err)
		return
	}
	res, err := node.ExportVia(ctx, p.s.cfg.Dir, order)
	if err != nil {
		p.fail(w, http.StatusServiceUnavailable, ss, err)
		return
	}
	if res.Refused != "" {
		p.fail(w, http.StatusForbidden, ss, errors.New(res.Refused))
		return
	}
	if err := writeManifest(out, ss.key, res.Manifest); err != nil {
		p.fail(w, http.StatusInternalServerError, ss, fmt.Errorf("the export %s is complete; its manifest could not be written: %w", out, err))
		return
	}
	http.Redirect(w, r, "/exports/"+id, http.StatusSeeOther)
}

// writeManifest signs the export's manifest and writes it, its signature
// and the signer's public key beside the export, as custos export does.
func writeManifest(out string, k *keys.AdminKey, m *keys.Manifest) error {
	body, sig, err := keys.SignManifest(k, m)
	if err != nil {
		return err
	}
	for path, b := range map[string][]byte{out + ".manifest.json": body, out + ".manifest.sig": sig, out + ".manifest.pub": k.ArmoredPublicKey()} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

type exportData struct {
	ID, Size string
}

// exportPage plays an export of this console's.
func (p *pages) exportPage(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if !p.s.exportedHere(id) {
		p.fail(w, http.StatusNotFound, ss, fmt.Errorf("no export of %q in %s", id, p.s.exportsDir()))
		return
	}
	fi, _ := os.Stat(p.s.exportPath(id))
	p.render(w, http.StatusOK, "export", ss, ss.lang, exportData{ID: id, Size: fmt.Sprintf("%.1f MB", float64(fi.Size())/1e6)})
}

// exportVideo serves the export's MP4 (ranges included, for seeking).
func (p *pages) exportVideo(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if !p.s.exportedHere(id) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "video/mp4")
	http.ServeFile(w, r, p.s.exportPath(id))
}
