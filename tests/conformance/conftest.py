def pytest_configure(config):
    # Markers used by transformers' test_modeling_common.py (registered by transformers' own conftest.py).
    for marker in (
        "slow",
        "accelerate_tests",
        "flash_attn_test",
        "flash_attn_3_test",
        "flash_attn_4_test",
        "torch_compile_test",
    ):
        config.addinivalue_line("markers", f"{marker}: used by transformers' common model tests")
