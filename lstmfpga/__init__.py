"""lstmfpga"""
