// Launch arguments for Debian's Chromium in the browser tests: headless as root, no
// background traffic (this machine's closed network refuses it noisily), and every host
// but 127.0.0.1 unresolvable, so a page that reaches off the machine fails visibly.
export const OFFLINE_CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];
