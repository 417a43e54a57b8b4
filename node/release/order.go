package release

// The export order: what the exporter signs, and its check.

import (
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// ExportRequest asks the node to export a request's footage. It is an
// order signed by the exporter (SignExport): the node serves it only to the
// request's requester, proven by their key, not by a name.
type ExportRequest struct {
	Request  string `json:"request"`
	Out      string `json:"out"`      // absolute path of the file to write; must not exist
	Exporter string `json:"exporter"` // the user who exports (who signs the manifest)
	// AllowGaps writes the export although footage the chain of custody
	// shows was recorded is missing or cannot be opened; every gap is
	// listed in the manifest. Without it such an export fails.
	AllowGaps bool      `json:"allow_gaps,omitempty"`
	Time      time.Time `json:"time"` // when the order was signed; it is good for policy.SignatureSkew
	Sig       []byte    `json:"sig"`  // the exporter's signature over ExportOrder
}

// ExportOrder is what an exporter signs: the federation, the request, the
// output path, whether gaps are allowed and the time, so an order cannot be
// reused for another request, file, federation or moment, nor turned into
// one that accepts missing footage.
func ExportOrder(federation string, req ExportRequest) []byte {
	gaps := "complete"
	if req.AllowGaps {
		gaps = "allow-gaps"
	}
	return []byte("custos/export/v2\x00" + federation + "\x00" + req.Request + "\x00" + req.Out + "\x00" + req.Exporter + "\x00" +
		gaps + "\x00" + req.Time.UTC().Format(time.RFC3339Nano))
}

// SignExport signs req as its exporter, with k, for the federation fid.
func SignExport(k *keys.AdminKey, fid string, req *ExportRequest) error {
	req.Time = time.Now().UTC()
	sig, err := k.Sign(ExportOrder(fid, *req), req.Time)
	if err != nil {
		return err
	}
	req.Sig = sig
	return nil
}

// checkExportOrder: the order is signed by the exporter's current key,
// recently.
func checkExportOrder(st *policy.State, req ExportRequest, now time.Time) error {
	u := st.Users[req.Exporter]
	if u == nil || u.Revoked {
		return errRefused{fmt.Sprintf("the exporter %q is not a user of the federation", req.Exporter)}
	}
	if d := now.Sub(req.Time); d > policy.SignatureSkew || d < -policy.SignatureSkew {
		return errRefused{fmt.Sprintf("the export order was signed at %s, more than %v from this node's clock: sign a new one", stamp(req.Time), policy.SignatureSkew)}
	}
	fp, err := policy.VerifySignature(u.PublicKey, ExportOrder(st.FederationID, req), req.Sig, req.Time)
	if err == nil && fp != u.Fingerprint {
		err = errors.New("signed by another key")
	}
	if err != nil {
		return errRefused{fmt.Sprintf("the export order is not signed by %s's key: %v", req.Exporter, err)}
	}
	return nil
}
