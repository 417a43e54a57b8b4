# Custos. `make demo` runs a federation on this machine; `make test` runs the
# test suite. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/custos-cctv/custos/node.Version=$(VERSION)
DEMO_FOR ?= 30s
BENCH_COUNT ?= 5
BENCH_TIME ?= 3s
CAPACITY_CAMERAS ?= 100,150,200,250
STORES ?= 50,100,250,500
# Hundreds of memberlist instances in one process on two cores starve each
# other's probes: the gossip half runs at the sizes that fit (README).
GOSSIP_STORES ?= 50,100
SCALE_CHANGES ?= 10
# The soak's length and its nemesis's seed (empty: a fresh one, printed).
SOAK ?= 30m
SOAK_SEED ?=
SOAK_TIMEOUT ?= 2h
comma := ,
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test e2e e2e-s3 soak demo bench scale lint fuzz clean clip-h265

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/custos ./cmd/custos

# The whole suite, with the race detector. Multi-node tests run in-process on
# 127.0.0.1; the `wg show` test needs wireguard-tools (.ci/run installs it).
# The whole-federation demo test runs on its own, without it (see TestDemo).
test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -count=1 -tags custos_protocol1 -run 'Protocol' ./policy/
	$(GO) test -count=1 -timeout 10m -run '^TestDemo$$' ./node/demo/

# SeaweedFS's weed, the real S3 server the replicas-on-S3 tests run
# against, built from its own module (tools/seaweedfs) so the main module
# never depends on it. Built once: only if bin/weed is missing (about 6
# minutes cold on 2 cores; seconds with a warm build cache).
bin/weed:
	@mkdir -p bin
	cd tools/seaweedfs && $(GO) build -o ../../bin/weed github.com/seaweedfs/seaweedfs/weed

# Datacenter replicas in an S3 bucket, against weed on loopback.
e2e-s3: bin/weed
	CUSTOS_WEED=$(CURDIR)/bin/weed $(GO) test -race -count=1 -timeout 20m -v ./media/store/s3blob/...
	CUSTOS_WEED=$(CURDIR)/bin/weed $(GO) test -race -count=1 -timeout 20m -run 'OnS3' -v ./node/replication/
	CUSTOS_WEED=$(CURDIR)/bin/weed $(GO) test -race -count=1 -timeout 20m -run 'InS3Bucket' -v ./node/

# The replicas-on-S3 tests against a real S3 server (e2e-s3), recording
# from real RTSP servers (GStreamer over UDP with Digest and a session
# timeout, over TLS; VLC), then fault scenarios on network namespaces
# (DESIGN §9): nodes as separate processes with real partitions, loss,
# delay and kill -9. Needs root.
e2e: e2e-s3
	CUSTOS_RTSP_E2E=1 $(GO) test -count=1 -timeout 10m -run 'RealRTSPServers' -v ./media/
	CUSTOS_NETNS=1 $(GO) test -count=1 -timeout 40m -run 'Netns' -v ./e2e/

# A Jepsen-style soak on the namespaces federation (e2e/netns_soak_test.go):
# a seeded nemesis, a policy workload checked for linearizability, then the
# replicas, segments and audit chains. Needs root. Replay a failure with
# make soak SOAK=… SOAK_SEED=<the seed it printed>. SOAK_TIMEOUT must leave
# SOAK plus 20 minutes (founding, checks); the test refuses to start otherwise.
soak:
	CUSTOS_NETNS=1 CUSTOS_SOAK=$(SOAK) CUSTOS_SOAK_SEED=$(SOAK_SEED) $(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -run '^TestNetnsSoak$$' -v ./e2e/

demo: build
	./bin/custos demo --for $(DEMO_FOR)

# Throughput of Custos's mesh next to its baselines, measured in one run:
# plain wireguard-go + netstack, Tailscale's tsnet (local control + DERP),
# quic-go and TCP on loopback. Medians of BENCH_COUNT runs and ratios.
bench:
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchtime=$(BENCH_TIME) -count=$(BENCH_COUNT) -timeout 30m ./e2e/bench/ | tee bin/bench.out
	@echo
	$(GO) run ./cmd/benchreport \
	  -ratio MeshTCP=BaselineWireguardNetstackTCP \
	  -ratio MeshQUIC=BaselineWireguardNetstackQUIC \
	  -ratio MeshTCP=BaselineTsnetTCP \
	  -ratio MeshQUIC=BaselineTsnetQUIC \
	  -ratio MeshQUIC=BaselineQUICLoopback \
	  -ratio MeshTCP=BaselineTsnetTCP:cpu-µs/Mbit \
	  -ratio MeshQUIC=BaselineTsnetQUIC:cpu-µs/Mbit \
	  < bin/bench.out
	@echo
	@echo "NAT: TCP inside the mesh over a datacenter's relay beside direct UDP; the relay server's CPU (in its own process) per Mbit relayed; time from two nodes' start to a direct path:"
	$(GO) test -run '^$$' -bench 'MeshTCPPath|RelayServerCPU' -benchtime=$(BENCH_TIME) -count=$(BENCH_COUNT) -timeout 20m ./mesh/ | tee bin/bench-nat.out
	$(GO) test -run '^$$' -bench 'TimeToDirect' -benchtime=3x -count=$(BENCH_COUNT) -timeout 20m ./mesh/ | tee -a bin/bench-nat.out
	$(GO) run ./cmd/benchreport -ratio MeshTCPPath/relay=MeshTCPPath/direct < bin/bench-nat.out
	@echo "(RelayServerCPU: cpu-us/Mbit = the relay process's CPU microseconds per Mbit it relayed; core%/100Mbps = the share of one core 100 Mbit/s of relayed traffic takes;"
	@echo " TimeToDirect: ms from start, peers configured at addresses that lead nowhere, over the relay and gossip to a direct path both ways)"
	@echo
	@echo "Policy: commit latency and failover beside plain hashicorp/raft (3 voters, loopback TCP, same log store):"
	$(GO) test -run '^$$' -bench 'PlainRaftCommit|CommitLeader|CommitForwarded' -benchtime=2000x -count=3 -timeout 20m ./consensus/ | tee bin/bench-policy.out
	$(GO) test -run '^$$' -bench 'PlainRaftFailover' -benchtime=1x -count=5 -timeout 20m ./consensus/ | tee -a bin/bench-policy.out
	$(GO) test -run '^$$' -bench 'MeshRaftCommit|PolicyCommit' -benchtime=1000x -count=3 -timeout 20m ./node/ | tee -a bin/bench-policy.out
	$(GO) test -run '^$$' -bench 'PolicyFailover' -benchtime=1x -count=5 -timeout 20m ./node/ | tee -a bin/bench-policy.out
	$(GO) test -run '^$$' -bench 'PolicyReplication50' -benchtime=100x -count=3 -timeout 20m ./node/ | tee -a bin/bench-policy.out
	$(GO) test -run '^$$' -bench 'JoinCatchUp' -benchtime=1x -count=3 -timeout 30m ./node/ | tee -a bin/bench-policy.out
	$(GO) run ./cmd/benchreport \
	  -ratio CommitLeader=PlainRaftCommit:p50-ms \
	  -ratio MeshRaftCommit=PlainRaftCommit:p50-ms \
	  -ratio PolicyCommit/leader=PlainRaftCommit:p50-ms \
	  -ratio PolicyCommit/store=PlainRaftCommit:p50-ms \
	  -ratio PolicyCommit/leader=PlainRaftCommit:p99-ms \
	  -ratio PolicyFailover=PlainRaftFailover:failover-ms \
	  -ratio JoinCatchUp/1store=JoinCatchUpRaft/1store:p50-ms \
	  -ratio JoinCatchUp/50stores=JoinCatchUpRaft/50stores:p50-ms \
	  < bin/bench-policy.out
	@echo "(JoinCatchUp: ms from a joined store's start to its replica holding the leader's policy, a log of about 110 (1 store) or 210 entries (50 stores"
	@echo " started at once, whole nodes in one process), p50/p90 over the stores; JoinCatchUpRaft: plain Raft on loopback TCP, same log, same state machine)"
	@echo
	@echo "Recording: segment encryption beside raw AES-256-GCM, muxing, the segment store, the whole pipeline:"
	$(GO) test -run '^$$' -bench 'EncryptSegment|DecryptSegment|RawAESGCM|NewEpochKey|Partial|Combine|SealSegment|VerifySealedSegment|Ed25519VerifyBaseline' -count=5 ./keys/ | tee bin/bench-media.out
	$(GO) test -run '^$$' -bench 'Mux|Put|RecordPipeline' -count=3 ./media/ts/ ./media/store/ ./media/ | tee -a bin/bench-media.out
	$(GO) test -run '^$$' -bench 'BenchmarkRelease$$' -benchtime=20x -count=3 -timeout 20m ./node/ | tee -a bin/bench-media.out
	$(GO) test -run '^$$' -bench 'BenchmarkExport$$' -benchtime=1x -count=3 -timeout 30m ./node/ | tee -a bin/bench-media.out
	$(GO) run ./cmd/benchreport -ratio EncryptSegment=RawAESGCM -ratio DecryptSegment=RawAESGCM -ratio Muxer=MuxAstits \
	  -ratio Release=DecryptSegment \
	  -ratio Export/1m=DecryptSegment:MB/s -ratio Export/1h=DecryptSegment:MB/s \
	  -ratio Partial=DecryptSegment:ns/op -ratio Combine=DecryptSegment:ns/op \
	  -ratio SealSegment=Ed25519VerifyBaseline:ns/op -ratio VerifySealedSegment=Ed25519VerifyBaseline:ns/op < bin/bench-media.out
	@echo
	@echo "Camera ingest: the RTSP client's CPU per camera (8 fake cameras at 25 fps in a process of their own) over RTP/UDP beside TCP interleaved:"
	$(GO) test -run '^$$' -bench 'RTSPIngest' -benchtime=1x -count=3 -timeout 10m ./media/source/ | tee bin/bench-ingest.out
	$(GO) run ./cmd/benchreport -ratio RTSPIngest/udp=RTSPIngest/tcp:cpu-ms/camera-s < bin/bench-ingest.out
	@echo "(Release: p50/p99-ms from the last approval's commit to keys usable on the requester; MB/s: export, decrypt + remux, beside raw decryption;"
	@echo " Partial: one custodian's answer for one segment; Combine: the requester's check of two answers and unwrap, both beside one segment's decryption;"
	@echo " SealSegment, VerifySealedSegment: a store's seal on one segment and its check, beside one plain Ed25519 verification;"
	@echo " Export/1m, Export/1h: a request for the first minute or the whole of an hour of footage, exported on an admin node; MB/s over the"
	@echo " whole export, custodians' answers included, decrypt-MB/s without them, beside one segment's decryption)"
	@echo
	@echo "Live view and replication: glass-to-glass latency over the mesh beside the store's in-process live hub; a 1 h backlog pulled by dc-a beside a plain mesh QUIC stream of the same bytes:"
	$(GO) test -run '^$$' -bench 'LiveLatency' -benchtime=1x -count=3 -timeout 20m ./node/ | tee bin/bench-live.out
	$(GO) test -run '^$$' -bench 'ReplicationCatchUp' -benchtime=1x -count=3 -timeout 30m ./node/ | tee -a bin/bench-live.out
	$(GO) test -run '^$$' -bench 'LiveLossy' -benchtime=1x -count=3 -timeout 30m ./node/ | tee -a bin/bench-live.out
	$(GO) test -run '^$$' -bench 'JournalAfter' -count=3 ./policy/audit/ | tee -a bin/bench-live.out
	$(MAKE) --no-print-directory bin/weed
	CUSTOS_WEED=$(CURDIR)/bin/weed $(GO) test -run '^$$' -bench 'ReplicaCatchUp' -benchtime=1x -count=3 -timeout 20m ./node/replication/ | tee -a bin/bench-live.out
	$(GO) run ./cmd/benchreport \
	  -ratio LiveLatency/viewers=1=LiveLatencyBaseline:p50-ms \
	  -ratio LiveLatency/viewers=10=LiveLatencyBaseline:p50-ms \
	  -ratio LiveLatency/viewers=1=LiveLatencyBaseline:p99-ms \
	  -ratio ReplicationCatchUp/pull=ReplicationCatchUp/mesh-quic-plain \
	  -ratio LiveLossy/datagrams=LiveLossy/quic:on-time-% \
	  -ratio LiveLossy/datagrams=LiveLossy/quic:p99-ms \
	  -ratio JournalAfter/full-scan=JournalAfter/marks:ms/pull \
	  -ratio ReplicaCatchUp/s3=ReplicaCatchUp/disk \
	  < bin/bench-live.out
	@echo "(LiveLatency: ms from capture to the frame on the viewer node, live frames only; ReplicationCatchUp/pull: realtime-x = footage / catch-up time, target >= 20;"
	@echo " LiveLossy: 5 % loss each way and 100 ms RTT between viewer and store; on-time-%: the camera's frames shown within 500 ms of capture,"
	@echo " /datagrams: Custos's live view, /stream: the same over a QUIC stream, /quic: a plain quic-go stream over the same impairment;"
	@echo " JournalAfter: one pull's read of a store's audit journal, 100 000 entries, 20 new: a scan of every line / from the nearest mark;"
	@echo " ReplicaCatchUp: a backlog of 120 segments of 512 KiB through the datacenter's checks into its replica on the local disk or in a SeaweedFS bucket on loopback, MB/s)"
	@echo
	@echo "Data subjects' rights: one camera-hour erased on a store and two datacenters, from the policy change to the three signed receipts;"
	@echo "redaction (ffmpeg decode, pixelate, encode) beside a plain ffmpeg -c copy of the same clip:"
	$(GO) test -run '^$$' -bench 'ErasureCameraHour' -benchtime=1x -count=3 -timeout 20m ./node/erasure/ | tee bin/bench-rights.out
	$(GO) test -run '^$$' -bench 'Redact|Copy' -benchtime=3x -count=3 -timeout 20m ./media/redact/ | tee -a bin/bench-rights.out
	$(GO) run ./cmd/benchreport -ratio Redact=Copy:frames/s < bin/bench-rights.out
	@echo "(ErasureCameraHour: 900 segments of 256 KiB and 60 epoch records per node; goal <= 5 s. Redact/Copy: frames/s of the fixture clip)"
	@echo
	@echo "Audit across sites: one datacenter's answer to an audit query over a store's 30-day journal copy (100 000 entries) beside reading its lines:"
	$(GO) test -run '^$$' -bench 'AuditQuery' -count=3 ./node/auditquery/ | tee bin/bench-audit.out
	$(GO) run ./cmd/benchreport -ratio AuditQuery/scan=AuditQuery/read-lines:ms/query < bin/bench-audit.out
	@echo "(AuditQuery/scan: lines that cannot match are skipped unread, the rest decoded with their hash checked and matched; the answer: 300 live views of one camera)"
	@echo
	@echo "Console: the overview page of a federation of 50 sites (100 cameras) from a logged-in session, as HTML and loaded in Chromium, beside fetching its data from the node's API;"
	@echo "live view: the delay from the camera's capture to the frame Chromium presents in the console's tile, beside the same stream to custos live:"
	$(GO) test -run '^$$' -bench 'ConsoleOverview' -count=3 ./node/console/ | tee bin/bench-console.out
	$(GO) test -run '^$$' -bench 'ConsoleLiveDelay' -benchtime=1x -count=3 -timeout 20m ./node/console/ | tee -a bin/bench-console.out
	$(GO) run ./cmd/benchreport -ratio ConsoleOverview/page=ConsoleOverview/fetch:ms/page -ratio ConsoleOverview/browser=ConsoleOverview/fetch:ms/page \
	  -ratio ConsoleLiveDelay/browser=ConsoleLiveDelay/cli:p50-ms -ratio ConsoleLiveDelay/browser=ConsoleLiveDelay/cli:p99-ms < bin/bench-console.out
	@echo "(ConsoleLiveDelay: ms from capture on the store to the frame presented in the browser (requestVideoFrameCallback) or handed to custos live, after a 3 s warm-up)"
	@echo
	@echo "How many 4 Mbit/s cameras one store sustains, H.264 (StoreCapacity) and H.265 (StoreCapacityH265) (paced synthetic sources, one store, fsync; behind=1 means it fell behind):"
	CUSTOS_CAPACITY_CAMERAS=$(CAPACITY_CAMERAS) $(GO) test -run '^$$' -bench 'StoreCapacity(H265)?$$' -benchtime=1x -timeout 60m ./media/ | tee bin/bench-capacity.out
	$(GO) run ./cmd/benchreport -capacity StoreCapacityH265=StoreCapacity < bin/bench-capacity.out
	@echo
	$(MAKE) --no-print-directory scale STORES=50,100 GOSSIP_STORES=50 SCALE_CHANGES=5

# A federation of STORES stores (and 3 voters, 10 admin nodes) simulated in
# one process: policy replication to every replica (node) and gossip after
# 20 stores restart (mesh); each metric's growth beside the smallest size.
SCALE_SIZES = $(subst $(comma), ,$(STORES))
SCALE_BASE = $(firstword $(SCALE_SIZES))
GOSSIP_SIZES = $(subst $(comma), ,$(GOSSIP_STORES))
SCALE_RATIOS = $(foreach n,$(wordlist 2,99,$(SCALE_SIZES)),\
    $(foreach u,apply-all-p50-ms cpu-ms/change leader-KB/change leader-idle-KB/s idle-cpu-ms/s heap-KiB/store,\
      -ratio 'FederationScale/stores=$(n)=FederationScale/stores=$(SCALE_BASE):$(u)')) \
  $(foreach n,$(wordlist 2,99,$(GOSSIP_SIZES)),\
    $(foreach u,detect-ms gossip-converge-ms gossip-KB/s/member gossip-cpu-ms/s,\
      -ratio 'FederationScaleGossip/stores=$(n)=FederationScaleGossip/stores=$(firstword $(GOSSIP_SIZES)):$(u)'))
scale:
	@mkdir -p bin
	CUSTOS_SCALE_STORES=$(STORES) $(GO) test -run '^$$' -bench 'FederationScale$$' -benchtime=$(SCALE_CHANGES)x -count=1 -timeout 60m ./node/ | tee bin/bench-scale.out
	CUSTOS_SCALE_STORES=$(GOSSIP_STORES) $(GO) test -run '^$$' -bench 'FederationScaleGossip' -benchtime=1x -count=3 -timeout 60m ./mesh/ | tee -a bin/bench-scale.out
	$(GO) run ./cmd/benchreport $(SCALE_RATIOS) < bin/bench-scale.out
	@echo "(Stores: $(STORES), gossip $(GOSSIP_STORES). Growth is at most linear when a total's ratio (ms, KB, cpu) is at most the ratio of stores, and a per-store"
	@echo " figure's (heap-KiB/store, gossip-KB/s/member) at most 1. FederationScale: $(SCALE_CHANGES) signed camera.add commands, each"
	@echo " submitted on an admin node and timed until every replica applied it; cpu-ms: the whole process (every replica verifies every signature);"
	@echo " leader-KB: bytes the leader wrote; snapshots-installed must be 0. FederationScaleGossip: 20 stores stop, are declared dead"
	@echo " (detect-ms) and start again (gossip-converge-ms: until every member sees every member alive))"

lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Regenerates the embedded H.265 clip from the H.264 one (needs ffmpeg with
# libx265); see media/clip/clip.go.
clip-h265:
	media/clip/gen.sh

# A short coverage-guided run of every fuzz target.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParsePeers -fuzztime 30s ./node/membership/
	$(GO) test -run '^$$' -fuzz FuzzDecodeToken -fuzztime 15s ./node/join/
	$(GO) test -run '^$$' -fuzz FuzzParseNodePublic -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzParseNodePrivate -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzDecodeEpochRecord -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzDecodeShare -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzDecryptSegment -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzOpenPartial -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzSegmentEphemeral -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzParseManifest -fuzztime 15s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzReadRequestFrame -fuzztime 15s ./node/rpc/
	$(GO) test -run '^$$' -fuzz FuzzReadDataFrame -fuzztime 15s ./node/rpc/
	$(GO) test -run '^$$' -fuzz FuzzLinkWrite -fuzztime 30s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzParseRxControl -fuzztime 15s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzReadStatusFrame -fuzztime 15s ./node/rpc/
	$(GO) test -run '^$$' -fuzz FuzzParseLiveFrame -fuzztime 15s ./node/live/
	$(GO) test -run '^$$' -fuzz FuzzDatagrams -fuzztime 15s ./node/live/
	$(GO) test -run '^$$' -fuzz FuzzDemuxTS -fuzztime 15s -fuzzminimizetime 0 ./node/release/
	$(GO) test -run '^$$' -fuzz FuzzDemux -fuzztime 15s -fuzzminimizetime 0 ./node/console/rtc/
	$(GO) test -run '^$$' -fuzz FuzzDecodeOpBody -fuzztime 15s ./node/
	$(GO) test -run '^$$' -fuzz FuzzDecodeReplicationBody -fuzztime 15s ./node/replication/
	$(GO) test -run '^$$' -fuzz FuzzNodeKeyFromCert -fuzztime 15s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzParseGossipMeta -fuzztime 15s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzUAPI -fuzztime 15s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzParseRelayEndpoint -fuzztime 15s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzProbeMatch -fuzztime 15s ./media/onvif/
	$(GO) test -run '^$$' -fuzz FuzzGetProfiles -fuzztime 15s ./media/onvif/
	$(GO) test -run '^$$' -fuzz FuzzGetStreamUri -fuzztime 15s ./media/onvif/
	$(GO) test -run '^$$' -fuzz FuzzParseAdmitRequest -fuzztime 15s ./mesh/
	$(GO) test -run '^$$' -fuzz FuzzDecodeEnvelope -fuzztime 15s ./policy/
	$(GO) test -run '^$$' -fuzz FuzzVerifyRelease -fuzztime 15s ./policy/
	$(GO) test -run '^$$' -fuzz FuzzDecodeEntry -fuzztime 15s ./policy/audit/
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime 15s -fuzzminimizetime 100x ./policy/audit/
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime 15s ./consensus/
	$(GO) test -run '^$$' -fuzz FuzzReadMessage -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzReadInterleaved -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz 'FuzzDepacketize$$' -fuzztime 15s -fuzzminimizetime 0 ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzDepacketize265 -fuzztime 15s -fuzzminimizetime 0 ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzParseSPS -fuzztime 15s ./media/h265/
	$(GO) test -run '^$$' -fuzz FuzzParseSPS -fuzztime 15s ./media/h264/
	$(GO) test -run '^$$' -fuzz FuzzParseSDP -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzAuthChallenge -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzParseTransport -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzParseSession -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzParseRTCP -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzReorder -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzBaseURL -fuzztime 15s ./media/source/
	$(GO) test -run '^$$' -fuzz FuzzSegmenter -fuzztime 15s ./media/ts/
	$(GO) test -run '^$$' -fuzz FuzzMuxFrame -fuzztime 15s ./media/ts/
	$(GO) test -run '^$$' -fuzz FuzzDecodeIndexEntry -fuzztime 15s ./media/store/
	$(GO) test -run '^$$' -fuzz FuzzParseSegmentName -fuzztime 15s ./media/store/
	$(GO) test -run '^$$' -fuzz FuzzCameraDir -fuzztime 15s ./media/store/

clean:
	rm -rf bin
