// Reference client: reads [[address, amount], ...] as JSON on stdin, prints the
// OpenZeppelin StandardMerkleTree root and each value's proof (leaf encoding address,uint256).
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const values = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tree = StandardMerkleTree.of(values, ["address", "uint256"]);
const proofs = values.map((v, i) => tree.getProof(i));
process.stdout.write(JSON.stringify({ root: tree.root, proofs }));
