package node

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteReplication prints a store's replication (per camera and
// datacenter: state, replicated up to, lag) or a datacenter's replicas, as
// `custos status` and the demo show them, each line starting with indent.
func WriteReplication(w io.Writer, st Status, indent string) {
	if len(st.Replication) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, indent+"CAMERA\tDATACENTER\tSTATE\tREPLICATED UP TO\tLAG\tLAG BYTES\t")
		for _, r := range st.Replication {
			upto := "-"
			if !r.UpTo.IsZero() {
				upto = r.UpTo.Local().Format("15:04:05.0")
			}
			state := r.State
			if r.Error != "" && r.State != "caught-up" {
				state += " (" + r.Error + ")"
			}
			fmt.Fprintf(tw, indent+"%s\t%s\t%s\t%s\t%.1fs\t%s\t\n", r.Camera, r.Datacenter, state, upto, r.LagSeconds, byteCount(uint64(r.LagBytes)))
		}
		tw.Flush()
	}
	if len(st.Replicas) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, indent+"REPLICA OF\tSTATE\tCAMERA\tSEGMENTS\tBYTES\tNEWEST\tAUDIT ENTRIES\t")
		for _, r := range st.Replicas {
			state := r.State
			if r.Error != "" {
				state += " (" + r.Error + ")"
			}
			if len(r.Cameras) == 0 {
				fmt.Fprintf(tw, indent+"%s\t%s\t-\t0\t0 B\t-\t%d\t\n", r.Store, state, r.AuditSeq)
			}
			for _, c := range r.Cameras {
				fmt.Fprintf(tw, indent+"%s\t%s\t%s\t%d\t%s\t%s\t%d\t\n", r.Store, state, c.Camera, c.Segments, byteCount(uint64(c.Bytes)), c.Newest.Local().Format(time.TimeOnly), r.AuditSeq)
			}
		}
		tw.Flush()
	}
}
