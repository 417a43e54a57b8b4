// Package media owns what happens to video on a node: camera sources
// (media/source: RTSP and the synthetic clip), the GOP-aligned MPEG-TS
// segmenter (media/ts), the encrypted segment store with its index and
// retention (media/store), and the recorder that joins them under the
// policy's cameras. Replication, live fan-out and export come later.
//
// It never imports consensus, mesh or node (e2e/deps_test.go): node hands it
// the policy and the keys it needs.
package media
