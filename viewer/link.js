// @ts-check
// The viewer's link: what it may carry and where. Pure (strings in, values out).
//
// A browser keeps every address it loads, fragment included, in its profile (History, Sessions,
// the ukm database), and history.replaceState does not take it back out: seen with a fresh
// Chromium profile, where the token (query) and passphrase (fragment) of an old link both stayed.
// So the link a user is given carries no secret: url, runner, keyIndex and control only; the
// viewer asks for the token and the passphrase (paste them into the form). A link that carries
// them anyway (tests and tools, opt-in) must have them in the fragment, which at least never
// reaches a server; the page then shows a warning. In the query (sent to the viewer's web server,
// and so into its logs) they are refused.

/** Link parameters that are not secret. */
export const PUBLIC_PARAMETERS = ['url', 'runner', 'keyIndex', 'control'];
/** Link parameters that are: accepted from the fragment only, with a warning. */
export const SECRET_PARAMETERS = ['token', 'passphrase'];

/**
 * @typedef {object} Link
 * @property {string} url the LiveKit server
 * @property {string} token '' unless the fragment carried it
 * @property {string} passphrase '' unless the fragment carried it
 * @property {string} keyIndex '0' unless given
 * @property {string} runner '' unless given
 * @property {boolean} control false for control=0
 * @property {string[]} secretsInFragment names of the secrets the fragment carried (used)
 * @property {string[]} secretsInQuery names of the secrets the query carried (refused)
 * @property {string} cleanHash what the address bar keeps: '#' + the public parameters, or ''
 */

/**
 * Read a link's query (`location.search`) and fragment (`location.hash`); the fragment wins.
 * @param {string} search
 * @param {string} hash
 * @returns {Link}
 */
export function parseLink(search, hash) {
  const query = new URLSearchParams(search);
  const fragment = new URLSearchParams(hash.replace(/^#/, ''));
  /** @param {string} name */
  const pick = (name) => fragment.get(name) ?? query.get(name) ?? '';
  const kept = new URLSearchParams();
  for (const name of PUBLIC_PARAMETERS) {
    const value = pick(name);
    if (value) kept.set(name, value);
  }
  return {
    url: pick('url'),
    token: fragment.get('token') ?? '',
    passphrase: fragment.get('passphrase') ?? '',
    keyIndex: pick('keyIndex') || '0',
    runner: pick('runner'),
    control: pick('control') !== '0',
    secretsInFragment: SECRET_PARAMETERS.filter((name) => fragment.get(name)),
    secretsInQuery: SECRET_PARAMETERS.filter((name) => query.get(name)),
    cleanHash: kept.toString() ? `#${kept}` : '',
  };
}
