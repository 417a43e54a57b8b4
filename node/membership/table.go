package membership

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/mesh"
)

// WritePeerTable prints peers as `custos status` shows them, each line
// starting with indent.
func WritePeerTable(w io.Writer, peers []mesh.PeerStatus, indent string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%sPEER\tKEY\tMESH ADDRESS\tPATH\tHANDSHAKE\tRX\tTX\tLIVENESS\n", indent)
	for _, p := range peers {
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = time.Since(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		// The path packets take now, as the bind saw them (not the
		// endpoint someone advertised): "direct IP:PORT", "relay NAME",
		// or "none".
		ep := p.Path
		if ep == "" {
			ep = "-"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, p.Name, p.PublicKey.ShortString(), p.Addr, ep, hs,
			ByteCount(p.RxBytes), ByteCount(p.TxBytes), p.Liveness)
	}
	if len(peers) == 0 {
		fmt.Fprintf(tw, "%s(no peers)\n", indent)
	}
	tw.Flush()
}

// ByteCount prints n bytes in binary units ("1.5 MiB"), as status shows
// traffic and sizes.
func ByteCount(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
