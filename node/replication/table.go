package replication

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Write prints a store's replication (per camera and datacenter: state,
// replicated up to, lag) or a datacenter's replicas, as `custos status`
// and the demo show them, each line starting with indent.
func Write(w io.Writer, replication []Status, replicas []ReplicaStatus, indent string) {
	if len(replication) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, indent+"CAMERA\tDATACENTER\tSTATE\tREPLICATED UP TO\tLAG\tLAG BYTES\t")
		for _, r := range replication {
			upto := "-"
			if !r.UpTo.IsZero() {
				upto = r.UpTo.Local().Format("15:04:05.0Z07:00") // with its zone, as custos prints every time
			}
			state := r.State
			if r.Error != "" && r.State != "caught-up" {
				state += " (" + r.Error + ")"
			}
			fmt.Fprintf(tw, indent+"%s\t%s\t%s\t%s\t%.1fs\t%s\t\n", r.Camera, r.Datacenter, state, upto, r.LagSeconds, byteCount(uint64(r.LagBytes)))
		}
		tw.Flush()
	}
	if len(replicas) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, indent+"REPLICA OF\tSTATE\tCAMERA\tSEGMENTS\tBYTES\tNEWEST\tAUDIT ENTRIES\t")
		for _, r := range replicas {
			state := r.State
			if r.Error != "" {
				state += " (" + r.Error + ")"
			}
			if len(r.Cameras) == 0 {
				fmt.Fprintf(tw, indent+"%s\t%s\t-\t0\t0 B\t-\t%d\t\n", r.Store, state, r.AuditSeq)
			}
			for _, c := range r.Cameras {
				fmt.Fprintf(tw, indent+"%s\t%s\t%s\t%d\t%s\t%s\t%d\t\n", r.Store, state, c.Camera, c.Segments, byteCount(uint64(c.Bytes)), c.Newest.Local().Format("15:04:05Z07:00"), r.AuditSeq)
			}
		}
		tw.Flush()
	}
}

// byteCount is n in B, KiB, MiB… as the node's tables print it.
func byteCount(n uint64) string {
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
