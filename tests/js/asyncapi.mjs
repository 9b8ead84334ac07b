// Validates an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package.json): the AsyncAPI JSON Schema, $refs, and the parser's own rules.
// Usage: node asyncapi.mjs <file | http(s) URL>   e.g. http://127.0.0.1:8000/api/asyncapi.json
// Prints every diagnostic; exits 1 on an error (or a warning, with --strict), else prints
// "ok: asyncapi ...".
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];
const args = process.argv.slice(2);
const strict = args.includes("--strict");
const source = args.find((arg) => !arg.startsWith("--"));

async function load(where) {
  if (/^https?:\/\//.test(where)) {
    const res = await fetch(where);
    if (!res.ok) throw new Error(`GET ${where}: ${res.status}`);
    return res.text();
  }
  return readFile(where, "utf8");
}

async function main() {
  if (!source) throw new Error("usage: node asyncapi.mjs <file | URL> [--strict]");
  const { document, diagnostics } = await new Parser().parse(await load(source));
  for (const d of diagnostics) {
    const where = (d.path || []).join("/") || "(document)";
    console.log(`${SEVERITY[d.severity] || d.severity} ${d.code} at ${where}: ${d.message}`);
  }
  const failing = diagnostics.filter((d) => d.severity === 0 || (strict && d.severity === 1));
  if (document === undefined || failing.length > 0) {
    console.error(`FAIL asyncapi: ${failing.length} diagnostic(s) ${strict ? "(strict)" : ""}`);
    process.exit(1);
  }
  console.log(`ok: asyncapi ${document.version()}, ${document.operations().length} operations, `
    + `${document.allMessages().length} messages`);
}

main().catch((err) => {
  console.error(`FAIL asyncapi: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
