// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IERC20Transfer {
    function transfer(address, uint256) external returns (bool);
}

// Pays one-shot claims against an OpenZeppelin StandardMerkleTree root with leaf encoding
// (address, uint256): leaf = keccak256(bytes.concat(keccak256(abi.encode(account, amount)))),
// nodes hash the sorted pair, as OpenZeppelin MerkleProof.verify.
contract ClaimDistributor {
    IERC20Transfer public immutable token;
    bytes32 public immutable merkleRoot;
    mapping(address => bool) public claimed;

    error AlreadyClaimed();
    error InvalidProof();

    event Claimed(address indexed account, uint256 amount);

    constructor(IERC20Transfer token_, bytes32 root_) {
        token = token_;
        merkleRoot = root_;
    }

    function claim(address account, uint256 amount, bytes32[] calldata proof) external {
        if (claimed[account]) revert AlreadyClaimed();
        bytes32 node = keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 p = proof[i];
            node = node < p ? keccak256(abi.encode(node, p)) : keccak256(abi.encode(p, node));
        }
        if (node != merkleRoot) revert InvalidProof();
        claimed[account] = true;
        token.transfer(account, amount);
        emit Claimed(account, amount);
    }
}
