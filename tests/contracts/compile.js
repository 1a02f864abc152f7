// Compiles every .sol file in this folder with the pinned solc-js (no download) and prints
// {"<Contract>": {"bytecode": "0x…"}} on stdout. Exit 1 on any compiler error.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const sources = {};
for (const f of fs.readdirSync(__dirname).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(__dirname, f), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const result = { solc: solc.version() };
for (const file of Object.keys(out.contracts)) {
  for (const [name, c] of Object.entries(out.contracts[file])) {
    result[name] = { bytecode: "0x" + c.evm.bytecode.object };
  }
}
process.stdout.write(JSON.stringify(result));
