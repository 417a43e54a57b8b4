// Live tiles: one WebRTC connection per camera, offered to the console
// (POST /live/offer) with every candidate gathered first, so one exchange
// does. The console answers with the camera's H.264, passed through. Each
// tile then asks every second how its stream is, to say why it ended.
"use strict";
(() => {
  const meta = document.querySelector('meta[name="csrf"]');
  if (!meta) return;
  const csrf = meta.content;
  const say = (tile, text) => { tile.querySelector(".live-state").textContent = text; };

  async function start(video) {
    const tile = video.closest("figure");
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (ev) => { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") done(); });
      setTimeout(done, 3000);
    });
    const resp = await fetch("/live/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ camera: video.dataset.camera, sdp: pc.localDescription.sdp }),
    });
    if (!resp.ok) { say(tile, await resp.text()); pc.close(); return; }
    const answer = await resp.json();
    // The console may end the stream at once (a codec the browser cannot
    // play): ask how it is from the start, whatever the connection does.
    let ended = false;
    const poll = setInterval(async () => {
      try {
        const r = await fetch("/live/" + answer.id, { headers: { "X-CSRF-Token": csrf } });
        if (!r.ok) { clearInterval(poll); say(tile, await r.text()); return; }
        const st = await r.json();
        if (st.state === "ended") {
          ended = true;
          clearInterval(poll);
          say(tile, st.error || "■");
          pc.close();
        }
      } catch (e) { /* the next tick asks again */ }
    }, 1000);
    video.addEventListener("playing", () => { if (!ended) say(tile, tile.dataset.playing || "▶"); }, { once: true });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  for (const v of document.querySelectorAll("video[data-camera]")) {
    start(v).catch((e) => say(v.closest("figure"), String(e)));
  }
})();
