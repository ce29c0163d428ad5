// @ts-check
// When the viewer may show a picture and send input: only the runner's video, and only while it is
// end-to-end encrypted with our key. Pure: the page gathers the evidence, this decides.
//
// Why: the LiveKit server, and anyone whose token may publish, can put a video track into the
// room. livekit-client shows the frames of a participant whose track is announced unencrypted as
// they come (its E2EE worker passes them through), so a fake desktop could be shown while the
// user's clicks and keys go to the real host. The runner's identity comes from the link (default
// DEFAULT_RUNNER, the runner's default livekit.identity) and is confirmed by its dr.hello answer;
// "encrypted with our key" means the E2EE worker decrypts that participant's frames (every frame
// that does not decrypt with a key of ours is dropped) and frames keep decoding after any
// decryption error. (The one exception livekit-client makes: frames ending in the server's SIF
// trailer pass undecrypted, but only when they are its fixed 2x2 H.264 / 8x8 VP8 black key frames,
// so a server can blank the picture, not draw one.)

/** The runner's default identity (runner/config.py, livekit.identity). */
export const DEFAULT_RUNNER = 'desktop-runner';

/**
 * 'idle': not connected. 'waiting': the runner has no video in the room. 'unencrypted': its video
 * is not end-to-end encrypted (announced so, or not decrypted by the E2EE worker). 'undecryptable':
 * frames fail to decrypt with our keys and none decoded since. 'not-runner': the participant
 * answering control as the runner says it is another runner. 'shown': the picture is shown.
 * @typedef {'idle' | 'waiting' | 'unencrypted' | 'undecryptable' | 'not-runner' | 'shown'} Screen
 */

/**
 * @typedef {object} Evidence
 * @property {boolean} connected a room is joined
 * @property {boolean} track the runner's video track is subscribed
 * @property {boolean} announcedEncrypted its publication and all of the runner's publications are
 *   announced as end-to-end encrypted (livekit-client's isEncrypted)
 * @property {boolean | undefined} decrypting the E2EE worker's state for the runner
 *   (ParticipantEncryptionStatusChanged); undefined before it said
 * @property {boolean} failing decryption errors for the runner, and no frame decoded since
 * @property {boolean} otherRunner the runner's dr.hello answer named another identity
 */

/** @param {Evidence} e @returns {Screen} */
export function screenVerdict(e) {
  if (!e.connected) return 'idle';
  if (e.otherRunner) return 'not-runner';
  if (!e.track) return 'waiting';
  if (!e.announcedEncrypted || e.decrypting !== true) return 'unencrypted';
  if (e.failing) return 'undecryptable';
  return 'shown';
}

/** What the page says instead of a picture.
 * @param {Screen} screen @param {string} runner */
export function screenMessage(screen, runner) {
  switch (screen) {
    case 'idle': return 'No screen yet.';
    case 'waiting': return `No picture: waiting for the host (${runner}) to share its screen.`;
    case 'unencrypted':
      return "No picture: the host's video is not encrypted with your key, so it is not shown.";
    case 'undecryptable':
      return "No picture: the host's video cannot be decrypted: check the passphrase and key index.";
    case 'not-runner': return `No picture: the participant ${runner} says it is another runner.`;
    default: return '';
  }
}
