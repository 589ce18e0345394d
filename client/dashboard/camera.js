// This browser's camera and microphone, streamed to the server over WebRTC (non-trickle: every ICE candidate
// goes in the offer, the server's answer carries all of its own).

const GATHER_CAP_MS = 3000;
const ANSWER_TIMEOUT_MS = 20000;

export const CAMERA_CONSTRAINTS = {
  audio: true,
  video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
};

function gatheringDone(pc, capMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const onCandidate = (event) => { if (!event.candidate) done(); };  // null candidate: gathering finished
    const timer = setTimeout(done, capMs);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCandidate);
  });
}

function describeMediaError(exc) {
  const name = exc && exc.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return ['camera_denied', 'camera/microphone permission was denied — allow access in the browser and try again'];
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') {
    return ['no_camera', 'no camera and microphone were found on this device'];
  }
  if (name === 'NotReadableError' || name === 'AbortError') {
    return ['camera_busy', 'the camera or microphone could not be opened (in use by another application?)'];
  }
  return ['camera_error', `could not open the camera: ${(exc && (exc.message || exc.name)) || exc}`];
}

export class Camera {
  /**
   * @param {{send: (req: object) => boolean, onError: (code: string, message: string, stream?: string) => void,
   *          onChange: (camera: Camera) => void}} handlers
   */
  constructor({ send, onError, onChange }) {
    this.send = send;
    this.onError = onError;
    this.onChange = onChange;
    this.state = 'idle';  // idle | requesting | offering | live
    this.pc = null;
    this.media = null;
    this.streamId = null;
    this.answerTimer = null;
  }

  get active() {
    return this.state !== 'idle';
  }

  /** True while an offer went out and its answer has not come back. */
  get awaitingAnswer() {
    return this.state === 'offering';
  }

  _set(state) {
    this.state = state;
    this.onChange(this);
  }

  async start(iceServers = []) {
    if (this.active) return;
    this._set('requesting');
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this._fail('camera_unavailable', 'this page cannot use the camera: browsers allow it only on https:// or ' +
        'http://localhost / 127.0.0.1 pages');
      return;
    }
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia(CAMERA_CONSTRAINTS);
    } catch (exc) {
      this._fail(...describeMediaError(exc));
      return;
    }
    if (this.state !== 'requesting') {  // stopped while the permission prompt was up
      media.getTracks().forEach((t) => t.stop());
      return;
    }
    this.media = media;
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers });
      this.pc = pc;
      for (const track of media.getTracks()) pc.addTrack(track, media);
      pc.addEventListener('connectionstatechange', () => {
        if (this.pc !== pc) return;
        if (pc.connectionState === 'failed') {
          this.onError('webrtc_failed', 'the WebRTC connection to the server failed (no usable ICE path?)',
            this.streamId || undefined);
        }
        this.onChange(this);
      });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await gatheringDone(pc, GATHER_CAP_MS);
    } catch (exc) {
      if (this.pc === pc) this._fail('webrtc_error', `could not prepare the WebRTC offer: ${exc.message || exc}`);
      return;
    }
    if (this.pc !== pc) return;  // stopped meanwhile
    if (!this.send({ type: 'webrtc_offer', sdp: pc.localDescription.sdp })) {
      this._fail('not_connected', 'not connected to the server; the camera was not started');
      return;
    }
    this._set('offering');
    this.answerTimer = setTimeout(() => {
      if (this.state === 'offering') this._fail('timeout', 'the server did not answer the camera\'s WebRTC offer');
    }, ANSWER_TIMEOUT_MS);
  }

  /** The server's webrtc_answer: completes the connection. */
  async accept(answer) {
    if (!this.pc || this.state !== 'offering') return false;
    clearTimeout(this.answerTimer);
    this.streamId = answer.stream;
    this._set('live');
    try {
      await this.pc.setRemoteDescription({ type: answer.sdp_type || 'answer', sdp: answer.sdp });
    } catch (exc) {
      this.onError('webrtc_error', `the server's WebRTC answer was refused: ${exc.message || exc}`, answer.stream);
      return false;
    }
    return true;
  }

  /** An error from the server while the offer was out (it carries no stream): the offer failed. */
  offerFailed() {
    this.stop();
  }

  _fail(code, message) {
    this.onError(code, message);
    this.stop();
  }

  /** Closes the peer connection and releases the camera and microphone. */
  stop() {
    clearTimeout(this.answerTimer);
    const { pc, media } = this;
    this.pc = null;
    this.media = null;
    this.streamId = null;
    if (pc) {
      try { pc.close(); } catch { /* closed already */ }
    }
    if (media) media.getTracks().forEach((track) => track.stop());
    if (this.state !== 'idle') this._set('idle');
  }
}
