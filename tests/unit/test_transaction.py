"""Building the swap transaction from a hand-made quote: a real, signed Solana transaction.

Its instructions (programs, accounts, data), its bound, its signature and its expiry, read
back from the serialized bytes with solders.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import base58
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.transaction import Transaction as SolanaTransaction

from orderengine.domain import Order, OrderStatus
from orderengine.engine import limit_floor
from orderengine.model import plain_decimal
from orderengine.tokens import TOKENS, WSOL_MINT
from orderengine.transaction import (
    Instruction,
    Swap,
    Transaction,
    build,
    find_swap,
    min_amount_out,
    public_key,
    raw_units,
)
from orderengine.venues.values import Dex, Quote, RecentBlockhash, price_of

ORDER_ID = UUID("3f2b8c1e-5a4d-4e6f-9b7a-0c1d2e3f4a5b")
SIGNER = Keypair.from_seed(bytes(range(32)))
EXPIRES_AT = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
BLOCKHASH = RecentBlockhash(blockhash=str(Hash(bytes([7] * 32))), expires_at=EXPIRES_AT)
BASE58_ALPHABET = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")

PROGRAM_IDS = {
    "associated-token": "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
    "system": "11111111111111111111111111111111",
    "spl-token": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "raydium": "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8",
    "meteora": "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo",
    "memo": "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
}
"""The programs' mainnet ids, written out here rather than imported from what is tested."""
WSOL_ACCOUNT = get_associated_token_address(SIGNER.pubkey(), Pubkey.from_string(WSOL_MINT))


def pool_address(dex: Dex, token_in: str, token_out: str) -> str:
    digest = hashlib.sha256(f"{dex}:{token_in}:{token_out}".encode()).digest()
    return str(Pubkey(digest))


def quote(
    token_in: str,
    token_out: str,
    amount_in: str,
    amount_out: str,
    dex: Dex = "raydium",
) -> Quote:
    amount_in_, amount_out_ = Decimal(amount_in), Decimal(amount_out)
    return Quote(
        dex=dex,
        pool=pool_address(dex, token_in, token_out),
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in_,
        amount_out=amount_out_,
        price=amount_out_ / amount_in_,
        price_impact_pct=Decimal("0.01"),
        fee=amount_in_ * Decimal("0.0025"),
        fee_bps=Decimal("25.00"),
    )


def built(
    the_quote: Quote,
    slippage_bps: int = 50,
    *,
    signer: Keypair = SIGNER,
    blockhash: RecentBlockhash = BLOCKHASH,
) -> Transaction:
    return build(ORDER_ID, the_quote, min_amount_out(the_quote, slippage_bps), signer, blockhash)


def signed(transaction: Transaction) -> SolanaTransaction:
    return SolanaTransaction.from_bytes(transaction.raw)


def steps(transaction: Transaction) -> list[tuple[str, str]]:
    return [(step.program, step.action) for step in transaction.instructions]


def instruction(action: str, transaction: Transaction) -> Instruction:
    (found,) = [step for step in transaction.instructions if step.action == action]
    return found


def compiled(transaction: Transaction) -> list[tuple[str, bytes, list[Pubkey]]]:
    """Each instruction of the signed message: its program id, data and accounts."""
    message = signed(transaction).message
    keys = message.account_keys
    return [
        (str(keys[step.program_id_index]), bytes(step.data), [keys[i] for i in step.accounts])
        for step in message.instructions
    ]


# ---- instructions -------------------------------------------------------------------------


def test_sol_in_is_wrapped_swapped_and_unwrapped() -> None:
    transaction = built(quote("SOL", "USDC", "1.5", "224.5"), 100)

    assert steps(transaction) == [
        ("associated-token", "createIdempotent"),
        ("system", "transfer"),
        ("spl-token", "syncNative"),
        ("raydium", "swap"),
        ("spl-token", "closeAccount"),
        ("memo", "memo"),
    ]
    for action in ("createIdempotent", "syncNative", "closeAccount"):
        assert instruction(action, transaction).args["mint"] == WSOL_MINT
        assert instruction(action, transaction).args["account"] == str(WSOL_ACCOUNT)


def test_the_signed_message_holds_the_same_steps_with_the_real_program_ids() -> None:
    for transaction in (
        built(quote("SOL", "USDC", "1.5", "224.5")),
        built(quote("USDC", "SOL", "150", "0.99", dex="meteora")),
        built(quote("JUP", "USDT", "10", "8")),
    ):
        programs = [program_id for program_id, _, _ in compiled(transaction)]

        assert programs == [step.program_id for step in transaction.instructions]
        assert programs == [PROGRAM_IDS[step.program] for step in transaction.instructions]


def test_the_wsol_steps_are_the_programs_real_instructions() -> None:
    create, fund, sync, _, close, _ = compiled(built(quote("SOL", "USDC", "1.5", "224.5")))
    owner, wsol_mint = SIGNER.pubkey(), Pubkey.from_string(WSOL_MINT)
    system, token = (Pubkey.from_string(PROGRAM_IDS[p]) for p in ("system", "spl-token"))

    # createIdempotent: payer, account, owner, mint, System program, Token program.
    assert create[1:] == (bytes([1]), [owner, WSOL_ACCOUNT, owner, wsol_mint, system, token])
    # System transfer: instruction 2, then the lamports as a u64.
    assert fund[1:] == (struct.pack("<IQ", 2, 1_500_000_000), [owner, WSOL_ACCOUNT])
    assert sync[1:] == (bytes([17]), [WSOL_ACCOUNT])
    # CloseAccount: the account, where its lamports go, its owner.
    assert close[1:] == (bytes([9]), [WSOL_ACCOUNT, owner, owner])


@pytest.mark.parametrize(
    ("amount", "lamports"),
    [
        ("1.5", "1500000000"),
        ("0.000000001", "1"),
        ("0.123456789", "123456789"),
        ("12345.678901234", "12345678901234"),
        ("1E+3", "1000000000000"),
    ],
)
def test_sol_in_transfers_the_exact_lamports(amount: str, lamports: str) -> None:
    transaction = built(quote("SOL", "USDC", amount, "1"), 50)

    assert instruction("transfer", transaction).args["lamports"] == lamports
    _, data, _ = compiled(transaction)[1]
    assert struct.unpack("<IQ", data) == (2, int(lamports))


def test_sol_out_creates_the_wsol_account_and_closes_it_without_funding_it() -> None:
    transaction = built(quote("USDC", "SOL", "150", "0.99", dex="meteora"), 50)

    assert steps(transaction) == [
        ("associated-token", "createIdempotent"),
        ("meteora", "swap"),
        ("spl-token", "closeAccount"),
        ("memo", "memo"),
    ]
    _, _, swap_accounts = compiled(transaction)[1]
    assert swap_accounts[3] == WSOL_ACCOUNT, "the swap pays out into the wSOL account"


@pytest.mark.parametrize("dex", ["raydium", "meteora"])
@pytest.mark.parametrize(("token_in", "token_out"), [("USDC", "BONK"), ("JUP", "USDT")])
def test_token_to_token_swap_is_only_the_swap(token_in: str, token_out: str, dex: Dex) -> None:
    transaction = built(quote(token_in, token_out, "10", "8", dex=dex), 50)

    assert steps(transaction) == [(dex, "swap"), ("memo", "memo")]


def test_swap_names_the_pool_mints_amount_in_and_minimum_out() -> None:
    the_quote = quote("JUP", "USDC", "100", "79.6", dex="meteora")

    swap = instruction("swap", built(the_quote, 50))

    assert swap.program == "meteora"
    assert swap.program_id == PROGRAM_IDS["meteora"]
    assert swap.args == {
        "pool": the_quote.pool,
        "mintIn": TOKENS["JUP"].mint,
        "mintOut": TOKENS["USDC"].mint,
        "amountIn": "100",
        "minAmountOut": "79.202000",
    }


@pytest.mark.parametrize(
    ("dex", "discriminator"),
    [("raydium", bytes([9])), ("meteora", bytes([248, 198, 158, 145, 225, 117, 135, 200]))],
)
def test_swap_data_is_the_venues_discriminator_then_raw_amount_in_and_minimum_out(
    dex: Dex, discriminator: bytes
) -> None:
    the_quote = quote("JUP", "USDC", "100", "79.6", dex=dex)
    transaction = built(the_quote, 50)

    program_id, data, accounts = compiled(transaction)[0]

    assert program_id == PROGRAM_IDS[dex]
    assert data == discriminator + struct.pack("<QQ", 100_000_000, 79_202_000)
    owner = SIGNER.pubkey()
    mint_in, mint_out = (Pubkey.from_string(TOKENS[t].mint) for t in ("JUP", "USDC"))
    assert accounts == [
        Pubkey.from_string(the_quote.pool),
        owner,
        get_associated_token_address(owner, mint_in),
        get_associated_token_address(owner, mint_out),
        mint_in,
        mint_out,
        Pubkey.from_string(PROGRAM_IDS["spl-token"]),
    ]
    assert find_swap(signed(transaction), dex) == Swap.of(the_quote, Decimal("79.202000"))
    other: Dex = "meteora" if dex == "raydium" else "raydium"
    assert find_swap(signed(transaction), other) is None


def test_transaction_carries_its_order_quote_bound_and_expiry() -> None:
    the_quote = quote("SOL", "USDC", "2", "299.123456")

    transaction = built(the_quote, 75)

    assert transaction.order_id == ORDER_ID
    assert transaction.quote == the_quote
    assert transaction.min_amount_out == min_amount_out(the_quote, 75)
    assert instruction("swap", transaction).args["minAmountOut"] == str(transaction.min_amount_out)
    assert transaction.expires_at == EXPIRES_AT


def test_transaction_fits_in_a_solana_packet_and_survives_json() -> None:
    transaction = built(quote("SOL", "BONK", "1.5", "11000000"))

    assert len(transaction.raw) <= 1232
    assert Transaction.model_validate_json(transaction.model_dump_json()) == transaction


# ---- the signature ------------------------------------------------------------------------


def test_the_transaction_is_signed_by_the_signer_on_the_blockhash_and_verifies() -> None:
    transaction = built(quote("SOL", "USDC", "1", "150"))
    solana = signed(transaction)

    solana.verify()
    assert solana.message.account_keys[0] == SIGNER.pubkey(), "the signer pays the fees"
    assert str(solana.message.recent_blockhash) == BLOCKHASH.blockhash
    assert transaction.signature == str(solana.signatures[0])
    message = Message.from_bytes(bytes(solana.message))
    assert SIGNER.sign_message(bytes(message)) == solana.signatures[0]


@pytest.mark.parametrize("seed", [bytes(32), bytes(range(32)), bytes([255] * 32)])
def test_the_public_key_read_from_a_keypair_is_the_one_it_derives(seed: bytes) -> None:
    keypair = Keypair.from_seed(seed)

    assert public_key(keypair) == keypair.pubkey()


def test_the_same_swap_on_the_same_blockhash_signs_differently_by_its_memo() -> None:
    first = built(quote("SOL", "USDC", "1", "150"))
    again = built(quote("SOL", "USDC", "1", "150"))

    assert first.signature != again.signature
    memos = [instruction("memo", each).args["memo"] for each in (first, again)]
    assert memos[0] != memos[1]
    assert all(
        isinstance(memo, str) and memo.startswith(f"orderengine {ORDER_ID} ") for memo in memos
    )
    assert steps(first) == steps(again)
    for each in (first, again):
        program, data, accounts = compiled(each)[-1]
        assert (program, accounts) == (PROGRAM_IDS["memo"], [])
        assert data.decode() == instruction("memo", each).args["memo"]


def test_a_new_blockhash_or_another_signer_gives_another_signature() -> None:
    the_quote = quote("SOL", "USDC", "1", "150")
    blockhashes = [
        BLOCKHASH.model_copy(update={"blockhash": str(Hash(bytes([n] * 32)))}) for n in range(3)
    ]

    signatures = {built(the_quote, blockhash=blockhash).signature for blockhash in blockhashes}
    signatures.add(built(the_quote, signer=Keypair.from_seed(bytes(32))).signature)

    assert len(signatures) == 4


@pytest.mark.parametrize(("token_in", "token_out"), [("USDC", "SOL"), ("SOL", "JUP")])
def test_signature_is_base58_of_64_bytes(token_in: str, token_out: str) -> None:
    signature = built(quote(token_in, token_out, "150", "1")).signature

    assert set(signature) <= BASE58_ALPHABET
    assert len(base58.b58decode(signature)) == 64


# ---- amounts in raw units -----------------------------------------------------------------


def test_raw_units_are_exact_and_refuse_what_a_u64_cannot_carry() -> None:
    assert raw_units(Decimal("1.000000001"), 9) == 1_000_000_001
    assert raw_units(Decimal("18446744073709.551615"), 6) == 2**64 - 1
    with pytest.raises(ValueError, match="decimal places"):
        raw_units(Decimal("0.0000001"), 6)
    with pytest.raises(ValueError, match="u64"):
        raw_units(Decimal("18446744073709.551616"), 6)
    with pytest.raises(ValueError, match="u64"):
        raw_units(Decimal(-1), 6)


# ---- the slippage bound -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_out", "amount_out", "slippage_bps", "expected"),
    [
        # 1.234567 × 0.9999 = 1.2344435433: down to 1.234443, never up to 1.234444.
        ("USDC", "1.234567", 1, "1.234443"),
        ("USDC", "100", 50, "99.500000"),
        # 0.987654321 × 0.995 = 0.982716049395: down at SOL's nine places.
        ("SOL", "0.987654321", 50, "0.982716049"),
        # 12345.67891 × 0.97 = 11975.3085427: down at BONK's five places.
        ("BONK", "12345.67891", 300, "11975.30854"),
        ("USDT", "10", 5_000, "5.000000"),
    ],
)
def test_min_amount_out_is_the_quote_less_slippage_rounded_down_to_the_token_unit(
    token_out: str, amount_out: str, slippage_bps: int, expected: str
) -> None:
    token_in = "USDC" if token_out != "USDC" else "SOL"
    minimum = min_amount_out(quote(token_in, token_out, "1", amount_out), slippage_bps)

    assert str(minimum) == expected
    assert minimum.as_tuple().exponent == -TOKENS[token_out].decimals


def test_min_amount_out_never_exceeds_the_quote_after_slippage() -> None:
    the_quote = quote("SOL", "USDC", "1", "149.999999")

    for slippage_bps in (1, 7, 50, 333, 5_000):
        minimum = min_amount_out(the_quote, slippage_bps)
        exact = the_quote.amount_out * (10_000 - slippage_bps) / 10_000
        assert minimum <= exact < minimum + TOKENS["USDC"].unit


def test_a_limit_floor_with_more_digits_than_decimal_keeps_rounds_up_to_the_next_unit() -> None:
    now = datetime.now(UTC)
    order = Order(
        order_id=ORDER_ID,
        type="limit",
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal(1),
        slippage_bps=50,
        status=OrderStatus.PENDING,
        attempt=1,
        last_seq=1,
        limit_price=Decimal("149.614247000000000000000000001"),
        created_at=now,
        updated_at=now,
    )
    floor = limit_floor(order)

    assert floor == Decimal("149.614247000000000000000000001")
    assert min_amount_out(quote("SOL", "USDC", "1", "149.614247"), 50, floor) == Decimal(
        "149.614248"
    )


@pytest.mark.parametrize(
    ("amount_in", "amount_out", "price"),
    [
        ("0.01", "99.254965", "9925.4965"),
        ("1000000", "0.000000099", "0.000000000000099"),
        ("0.000000001", "10000000000", "10000000000000000000"),
        ("3", "1", "0.333333333333333333"),
    ],
    ids=["exact", "a 10^13th", "10^19", "rounded"],
)
def test_a_price_keeps_its_significant_digits(amount_in: str, amount_out: str, price: str) -> None:
    assert plain_decimal(price_of(Decimal(amount_in), Decimal(amount_out))) == price
