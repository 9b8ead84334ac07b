// npm ci's last step (postinstall): copy socket.io-client's browser build into chatapp/static/vendor/,
// the folder the server serves it from. node_modules itself stays out of the served folder.
import { copyFileSync, mkdirSync } from "node:fs";

const from = new URL("node_modules/socket.io-client/dist/", import.meta.url);
const to = new URL("../static/vendor/", import.meta.url);
mkdirSync(to, { recursive: true });
for (const file of ["socket.io.min.js", "socket.io.min.js.map"]) {
  copyFileSync(new URL(file, from), new URL(file, to));
}
