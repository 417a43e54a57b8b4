#!/bin/sh
# Regenerates the H.265 clip from the H.264 one (see clip.go): same
# pictures, a keyframe (IDR with VPS, SPS, PPS) every 25 frames like the
# H.264 clip, no B-frames, no scene-cut keyframes, closed GOP.
# Needs ffmpeg with libx265 (Debian's has it).
set -eu
cd "$(dirname "$0")"
ffmpeg -nostdin -y -v error -i clip-640x360-25fps-10s.h264 -c:v libx265 \
	-x265-params keyint=25:min-keyint=25:bframes=0:repeat-headers=1:scenecut=0:open-gop=0:log-level=error \
	-preset fast -b:v 900k -f hevc clip-640x360-25fps-10s.h265
