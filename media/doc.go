// Package media will own camera sources (RTSP, synthetic), the segmenter,
// the encrypted segment store, replication, live fan-out and export.
//
// Empty until the recording issue. It must never import consensus.
package media
