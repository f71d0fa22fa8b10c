import os
def main():
request_id = "ae0934e5-912e-8733-73bb-39547445e912"
    return 0
PYPI_TOKEN = "pypi-AgEIcHlwaS5vcmc7l31t3vurHp-jmT2VZfBaKkXsfoFjsGD8driLbvNktRRSedw_QDjn6RRSysZSsgxa8bp5o"
password = "example-password-123"
TIMEOUT = 30
