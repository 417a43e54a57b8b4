// Package onvif finds IP cameras on the local network and asks them for
// their RTSP stream: what `custos camera discover` and `custos camera add
// --onvif` use on a store. It speaks only to cameras and imports nothing of
// the project; the recorder never calls it (it records the rtsp:// URL this
// package finds, through media/source).
//
// What it speaks:
//
//   - WS-Discovery (the 2005/04 draft ONVIF uses): a SOAP 1.2 Probe for
//     dn:NetworkVideoTransmitter and one for tds:Device, sent to
//     239.255.255.250:3702 from every IPv4 interface that can multicast;
//     ProbeMatch replies are collected until a timeout, matched to our
//     probes by wsa:RelatesTo, deduplicated by endpoint reference.
//   - ONVIF Profile S over HTTP(S): device GetSystemDateAndTime (to stamp
//     the UsernameToken in the device's clock), GetDeviceInformation,
//     GetCapabilities (GetServices as a fallback) for the media service,
//     media GetProfiles and GetStreamUri (RTP-Unicast over RTSP).
//   - Authentication: WS-Security UsernameToken with PasswordDigest
//     (Base64(SHA-1(nonce + created + password))) on every request, and
//     HTTP Digest (MD5 or SHA-256, qop auth) when the device answers 401.
//
// Not: Profile T (media2), G, M, PTZ, events, WS-Discovery Resolve.
// An https device service must present a certificate the system trusts.
//
// Every byte from the network is hostile: a discovery reply is at most
// 64 KiB and a SOAP response 1 MiB; devices, XAddrs, scopes, profiles and
// strings are counted and capped; only http(s) XAddrs and rtsp stream URIs
// are taken; text a device sends is stripped of control characters before
// it reaches an error. A password never reaches an error or a log line: it
// only enters digests.
//
// The media service's host is always the device service's host (the port
// and path are the device's): credentials go only to the address the
// operator gave, and a camera behind NAT that reports its private address
// still works.
//
// No SOAP library: encoding/xml with namespace-qualified names does the
// parsing, and none of the Go SOAP or ONVIF packages is well kept or fits
// (generated WSDL bindings hundreds of times larger than the five calls
// used here, unbounded reads, no fuzzing).
package onvif
